#!/usr/bin/env bash
# Regenerates sidecar/hot_text.ld: which code of meshguard-sidecar runs, so
# that the link puts it together.
#
#   scripts/sidecar-hot-text.sh [--keep]
#
# Why: the kernel maps a file-backed binary 64 KB around every page fault.
# The sidecar's 6 MB of code (most of it libcrypto and libprotobuf, linked
# statically) was 93 % resident after start because the functions that run
# are spread over nearly every 64 KB of it. Linked first and together, they
# take 3.7 MB, and the idle sidecar's RSS falls by about 1.7 MB
# (docs/BENCHMARKS.md, "Memory").
#
# How: builds the sidecar (-c opt) with a linker map, in the output base
# $HOT_TEXT_OUTPUT_BASE (default the data-plane benchmark's,
# ~/.cache/bazel_ob/dpbench), then runs a CA, an
# echo server and a pair of sidecars on 127.0.0.1 ports 29000-29300, both
# sidecars under valgrind's callgrind: bootstrap, one renewal (12 s
# certificates), unary calls of 64 B and 16 KiB through the pair, the admin
# endpoints, SIGTERM. scripts/lib/hot_text.py maps every function that ran
# to its input section in the map and writes the linker script. Review the
# diff and commit it; a stale script still links (new code goes after the
# hot part), it only maps more pages.
#
# Installs valgrind with apt-get when missing. Not part of the test suite.
# --keep leaves the work directory (/tmp/meshguard-hot-text) for a look.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
KEEP=0
case "${1:-}" in
  --keep) KEEP=1 ;;
  -h | --help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) echo "sidecar-hot-text.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
esac

if ! command -v valgrind >/dev/null; then
  apt-get install -y --no-install-recommends valgrind >/dev/null
fi

W=/tmp/meshguard-hot-text
OUTPUT_BASE=${HOT_TEXT_OUTPUT_BASE:-$HOME/.cache/bazel_ob/dpbench}
BAZEL=(bazel --output_base="$OUTPUT_BASE")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ "$KEEP" = 1 ] || rm -rf "$W"
}
trap cleanup EXIT
rm -rf "$W"
mkdir -p "$W"

echo "building (bazel -c opt, output base $OUTPUT_BASE)"
"${BAZEL[@]}" build -c opt --jobs=2 //identity/ca:meshguard-ca \
  //cli:meshguardctl //tests/testing:echo_server //tests/bench:loadgen \
  >"$W/build.log" 2>&1 || { tail -20 "$W/build.log" >&2; exit 1; }
# The sidecar alone, so that no other link writes the map. A new map path
# each run: a cached link would write none.
MAP=$W/sidecar-$(date +%s).map
# Without the current hot_text.ld: valgrind names only the functions in
# .text (sidecar/BUILD.bazel).
"${BAZEL[@]}" build -c opt --jobs=2 --define=hot_text=off \
  --linkopt=-Wl,-Map="$MAP" //sidecar:meshguard-sidecar >>"$W/build.log" 2>&1 ||
  { tail -20 "$W/build.log" >&2; exit 1; }
[ -s "$MAP" ] || { echo "sidecar-hot-text.sh: the link wrote no map" >&2; exit 1; }
BIN=$("${BAZEL[@]}" info -c opt bazel-bin 2>/dev/null)
cp "$BIN/sidecar/meshguard-sidecar" "$W/meshguard-sidecar"
S=$W/meshguard-sidecar

wait_ready() {
  for _ in $(seq 600); do
    curl -fs "http://127.0.0.1:$1/readyz" >/dev/null && return 0
    sleep 0.1
  done
  echo "sidecar-hot-text.sh: nothing ready on port $1" >&2
  exit 1
}

"$BIN/tests/testing/echo_server" --listen=127.0.0.1:29000 >"$W/echo.log" 2>&1 &
PIDS+=($!)
"$BIN/identity/ca/meshguard-ca" init --data-dir "$W/ca" >/dev/null
"$BIN/identity/ca/meshguard-ca" serve --data-dir "$W/ca" \
  --listen 127.0.0.1:29012 --admin-listen 127.0.0.1:29014 >"$W/ca.log" 2>&1 &
PIDS+=($!)
wait_ready 29014
CTL=("$BIN/cli/meshguardctl" --ca 127.0.0.1:29012 --ca-bundle "$W/ca/bundle.pem"
     --admin-socket "$W/ca/admin.sock")
TA=$("${CTL[@]}" token create --spiffe-id spiffe://cluster.local/ns/hot/sa/client --ttl 10m)
TB=$("${CTL[@]}" token create --spiffe-id spiffe://cluster.local/ns/hot/sa/server --ttl 10m)

CG=(valgrind --tool=callgrind --demangle=no)
"${CG[@]}" --callgrind-out-file="$W/b.callgrind" "$S" \
  --ca 127.0.0.1:29012 --ca-bundle "$W/ca/bundle.pem" --join-token "$TB" \
  --ttl 12s --app 127.0.0.1:29000 --inbound-listen 127.0.0.1:29106 \
  --outbound-listen 127.0.0.1:29101 --admin-listen 127.0.0.1:29120 \
  --workers 1 >"$W/b.log" 2>&1 &
B=$!
PIDS+=($B)
"${CG[@]}" --callgrind-out-file="$W/a.callgrind" "$S" \
  --ca 127.0.0.1:29012 --ca-bundle "$W/ca/bundle.pem" --join-token "$TA" \
  --ttl 12s --app 127.0.0.1:29000 --inbound-listen 127.0.0.1:29206 \
  --outbound-listen 127.0.0.1:29201 --admin-listen 127.0.0.1:29220 \
  --route "hot=127.0.0.1:29106=spiffe://cluster.local/ns/hot/sa/server" \
  --workers 1 >"$W/a.log" 2>&1 &
A=$!
PIDS+=($A)
wait_ready 29120
wait_ready 29220

echo "profiling: calls through the pair, admin endpoints, one renewal"
LOAD=("$BIN/tests/bench/loadgen" --target 127.0.0.1:29201 --authority hot
      --connections 1 --warmup 0)
for port in 29120 29220; do
  for path in metrics certs readyz healthz; do
    curl -fs "http://127.0.0.1:$port/$path" >/dev/null
  done
done
"${LOAD[@]}" --streams 1 --payload 64 --duration 2 >/dev/null
"${LOAD[@]}" --streams 4 --payload 16384 --duration 2 >/dev/null
sleep 8  # past half of the 12 s lifetime: both renew
"${LOAD[@]}" --streams 8 --payload 64 --duration 2 >/dev/null
for port in 29120 29220; do
  curl -fs "http://127.0.0.1:$port/metrics" >/dev/null
  curl -fs "http://127.0.0.1:$port/certs" >/dev/null
done
kill -TERM "$A" "$B"
wait "$A" "$B" || true

python3 "$ROOT/scripts/lib/hot_text.py" --binary "$S" --map "$MAP" \
  --out "$ROOT/sidecar/hot_text.ld" "$W/a.callgrind" "$W/b.callgrind"
echo "rebuild the sidecar and compare idle RSS (docs/BENCHMARKS.md, Memory)"
