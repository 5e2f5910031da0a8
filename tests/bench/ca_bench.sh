#!/usr/bin/env bash
# CA issuance benchmark: certificates per second end to end (gRPC, mTLS
# peer check, CSR checks, signing, durable SQLite log) beside two upper
# bounds measured in the same run, and the table written into
# docs/BENCHMARKS.md under "## CA issuance" (other sections are kept).
#
#   tests/bench/ca_bench.sh [--seconds S] [--rounds R] [--clients "1 4 16"]
#                           [--drivers "threads async"] [--no-doc]
#
# Builds (bazel build -c opt) ca_issue_bench, meshguard-ca and meshguardctl;
# starts meshguard-ca on loopback (ephemeral ports) in a temp dir with rate
# limiting off; gets one certificate per client with join tokens through
# meshguardctl; then R rounds, each interleaving:
#   openssl speed -seconds 5 ecdsap256   (sign/s, one core)
#   ca_issue_bench --mode=bare           (in-process loop, one thread; and
#                                         two threads, --threads=2)
#   ca_issue_bench --mode=e2e            (1, 4, 16 clients, persistent mTLS
#                                         channel per client; --drivers:
#                                         "threads", a blocking thread per
#                                         client, and/or "async", one thread
#                                         driving every client's calls)
#   ca_issue_bench --mode=e2e --channel=per_call  (CaClient::Issue as is:
#                                         a new channel per renewal, 4 clients)
# and reports the median of the rounds. The CA is killed on exit, even on
# failure. Not a test: nothing here fails on speed.
#
# Environment: BAZEL_STARTUP_OPTS (e.g. --output_base=...), BAZEL_BUILD_OPTS
# (e.g. --jobs=2), CA_BENCH_TMPDIR (where the CA's data dir and SQLite log
# live; default $TMPDIR or /tmp; the log's fsyncs land on that filesystem).
set -euo pipefail
cd "$(dirname "$0")/../.."

SECONDS_PER_RUN=10
ROUNDS=3
CLIENT_COUNTS="1 4 16"
DRIVERS="threads"
PER_CALL_CLIENTS=4
WRITE_DOC=1
COMMAND_LINE="tests/bench/ca_bench.sh"
for arg in "$@"; do COMMAND_LINE+=" $(printf '%q' "$arg")"; done
for var in CA_BENCH_TMPDIR BAZEL_BUILD_OPTS BAZEL_STARTUP_OPTS; do
  if [ -n "${!var:-}" ]; then
    COMMAND_LINE="$var='${!var}' $COMMAND_LINE"
  fi
done
COMMAND_LINE=${COMMAND_LINE% }
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECONDS_PER_RUN=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --clients) CLIENT_COUNTS=$2; shift 2 ;;
    --drivers) DRIVERS=$2; shift 2 ;;
    --no-doc) WRITE_DOC=0; shift ;;
    -h|--help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "ca_bench: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
done
MAX_CLIENTS=$PER_CALL_CLIENTS
for n in $CLIENT_COUNTS; do [ "$n" -gt "$MAX_CLIENTS" ] && MAX_CLIENTS=$n; done

# shellcheck disable=SC2086
BAZEL=(bazel ${BAZEL_STARTUP_OPTS:-})
# shellcheck disable=SC2086
BUILD_OPTS=(-c opt ${BAZEL_BUILD_OPTS:-})

say() { printf '==> %s\n' "$*" >&2; }

say "building (bazel build -c opt)"
BUILD_LOG=$(mktemp /tmp/ca-bench-build.XXXXXX)
if ! "${BAZEL[@]}" build "${BUILD_OPTS[@]}" //tests/bench:ca_issue_bench \
    //identity/ca:meshguard-ca //cli:meshguardctl >"$BUILD_LOG" 2>&1; then
  grep -E '^(ERROR|FAILED)' "$BUILD_LOG" | head -20 >&2
  echo "build failed; full log in $BUILD_LOG" >&2
  exit 1
fi
rm -f "$BUILD_LOG"
BIN=$("${BAZEL[@]}" info "${BUILD_OPTS[@]}" bazel-bin 2>/dev/null)
BENCH="$BIN/tests/bench/ca_issue_bench"
CA="$BIN/identity/ca/meshguard-ca"
CTL="$BIN/cli/meshguardctl"

WORK=$(mktemp -d "${CA_BENCH_TMPDIR:-${TMPDIR:-/tmp}}/ca-bench.XXXXXX")
CA_PID=""
cleanup() {
  local rc=$?
  if [ -n "$CA_PID" ]; then
    kill "$CA_PID" 2>/dev/null || true
    wait "$CA_PID" 2>/dev/null || true
  fi
  if [ "$rc" != 0 ] && [ -f "$WORK/ca.log" ]; then
    cp "$WORK/ca.log" /tmp/ca-bench-failed-ca.log
    echo "ca_bench failed; the CA's log is in /tmp/ca-bench-failed-ca.log" >&2
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "starting meshguard-ca in $WORK (rate limiting off)"
"$CA" init --data-dir "$WORK/ca" >/dev/null
cat >"$WORK/ca.yaml" <<YAML
rate_limit:
  requests_per_second: 0
YAML
# Ephemeral ports; the CA logs the gRPC port it got.
"$CA" serve --data-dir "$WORK/ca" --config "$WORK/ca.yaml" \
  --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 >"$WORK/ca.log" 2>&1 &
CA_PID=$!
PORT=""
for _ in $(seq 1 100); do
  PORT=$(grep '"event":"ca_started"' "$WORK/ca.log" |
    sed -n 's/.*"grpc_port":\([0-9]*\).*/\1/p' | head -1 || true)
  [ -n "$PORT" ] && break
  kill -0 "$CA_PID" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$PORT" ]; then
  echo "meshguard-ca did not start; its log:" >&2
  cat "$WORK/ca.log" >&2
  exit 1
fi
CA_ADDR="127.0.0.1:$PORT"
HTTP_PORT=$(grep '"event":"ca_started"' "$WORK/ca.log" |
  sed -n 's/.*"http_port":\([0-9]*\).*/\1/p' | head -1 || true)
CTLG=(--ca "$CA_ADDR" --ca-bundle "$WORK/ca/bundle.pem"
  --admin-socket "$WORK/ca/admin.sock")

say "getting $MAX_CLIENTS client certificates (join tokens, meshguardctl)"
for i in $(seq 0 $((MAX_CLIENTS - 1))); do
  token=$("$CTL" "${CTLG[@]}" token create \
    --spiffe-id "spiffe://cluster.local/ns/bench/sa/client-$i" --ttl 10m \
    2>/dev/null)
  "$CTL" "${CTLG[@]}" cert request --join-token "$token" --ttl 4h \
    --out-dir "$WORK/certs/$i" >/dev/null
done

RESULTS="$WORK/results"
: >"$RESULTS"
run_bench() {  # args for ca_issue_bench; appends its RESULT line
  local out
  if ! out=$("$BENCH" "$@" 2>"$WORK/bench.err"); then
    cat "$WORK/bench.err" >&2
    echo "ca_issue_bench $* failed" >&2
    if ! kill -0 "$CA_PID" 2>/dev/null; then
      local ca_rc=0
      wait "$CA_PID" || ca_rc=$?
      CA_PID=""
      echo "meshguard-ca exited during the run (status $ca_rc;" \
        "above 128 is a signal); the end of its log:" >&2
      tail -5 "$WORK/ca.log" >&2
    fi
    exit 1
  fi
  cat "$WORK/bench.err" >&2
  echo "$out" | grep -v '^RESULT' >&2
  echo "$out" | grep '^RESULT' >>"$RESULTS"
}
openssl_speed() {
  local sign
  sign=$(openssl speed -seconds 5 ecdsap256 2>/dev/null |
    awk '/ecdsa \(nistp256\)/ {print $(NF-1)}')
  echo "openssl speed ecdsap256: $sign sign/s" >&2
  echo "RESULT mode=openssl label=openssl sign_per_s=$sign" >>"$RESULTS"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
START_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
E2E=(--mode=e2e --ca="$CA_ADDR" --ca-bundle="$WORK/ca/bundle.pem"
  --certs-dir="$WORK/certs" --ca-pid="$CA_PID" --seconds="$SECONDS_PER_RUN")
for round in $(seq 1 "$ROUNDS"); do
  say "round $round of $ROUNDS (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  openssl_speed
  run_bench --mode=bare --seconds="$SECONDS_PER_RUN" --label=bare
  run_bench --mode=bare --seconds="$SECONDS_PER_RUN" --threads=2 --label=bare-2
  rm -f "$WORK/floor.db"*
  run_bench --mode=bare --seconds="$SECONDS_PER_RUN" --threads=2 \
    --log-db="$WORK/floor.db" --label=bare-2-log
  for n in $CLIENT_COUNTS; do
    for driver in $DRIVERS; do
      label="e2e-$n"
      [ "$driver" = threads ] || label="e2e-$driver-$n"
      run_bench "${E2E[@]}" --clients="$n" --driver="$driver" --label="$label"
    done
  done
  run_bench "${E2E[@]}" --clients="$PER_CALL_CLIENTS" --channel=per_call \
    --label="e2e-per-call-$PER_CALL_CLIENTS"
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
ISSUED_TOTAL=$(grep -c '"event":"issued"' "$WORK/ca.log" || true)
FS_TYPE=$(df -T "$WORK" | awk 'NR == 2 {print $2}')
# The issuance log's group commit: transactions and rows over the whole run
# (bootstrap and every round), from the CA's own metrics.
GROUPING="not available (no http_port in the CA's log)"
if [ -n "$HTTP_PORT" ] && METRICS=$(curl -sf "http://127.0.0.1:$HTTP_PORT/metrics"); then
  COMMITS=$(echo "$METRICS" | awk '/^meshguard_ca_issuance_log_commits / {print $2}')
  ROWS=$(echo "$METRICS" | awk '/^meshguard_ca_issuance_log_rows / {print $2}')
  if [ -n "$COMMITS" ] && [ -n "$ROWS" ]; then
    GROUPING=$(awk -v c="$COMMITS" -v r="$ROWS" \
      'BEGIN { printf "%d rows in %d commits (%.2f rows per fsync)", r, c, (c > 0 ? r / c : 0) }')
  fi
fi
GIT_REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain -- identity tests/bench 2>/dev/null)" ]; then
  GIT_REV="$GIT_REV with uncommitted changes under identity/ or tests/bench/"
fi

# Median over rounds (and min-max) of one field for one label.
TABLE=$(awk -v rounds="$ROUNDS" -v clients_list="$CLIENT_COUNTS" \
  -v per_call="$PER_CALL_CLIENTS" -v drivers="$DRIVERS" '
function field(line, key,   n, i, parts, kv) {
  n = split(line, parts, " ")
  for (i = 1; i <= n; i++) {
    split(parts[i], kv, "=")
    if (kv[1] == key) return kv[2]
  }
  return ""
}
function median(label, key,   n, i, j, v, t) {
  n = 0
  for (i = 1; i <= count[label]; i++) v[++n] = field(line[label, i], key) + 0
  for (i = 1; i <= n; i++)
    for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
  lo[label, key] = v[1]; hi[label, key] = v[n]
  if (n % 2) return v[(n + 1) / 2]
  return (v[n / 2] + v[n / 2 + 1]) / 2
}
function range(label, key) {
  return sprintf("%.0f–%.0f", lo[label, key], hi[label, key])
}
function failures(label,   i, total, codes, c) {
  total = 0; codes = ""
  for (i = 1; i <= count[label]; i++) {
    total += field(line[label, i], "failures")
    c = field(line[label, i], "failure_codes")
    if (c != "none") codes = codes " " c
  }
  return total == 0 ? "0" : total " (" codes " )"
}
{
  label = field($0, "label")
  line[label, ++count[label]] = $0
}
END {
  sign = median("openssl", "sign_per_s")
  bare_cpu = median("bare", "per_cpu_s"); bare_cpu_range = range("bare", "per_cpu_s")
  bare_wall = median("bare", "per_s"); bare_wall_range = range("bare", "per_s")
  printf "| measurement | certs/s wall (median, min–max) | certs per CPU-second | p50 / p99 latency | failures | vs bare, per CPU-s | vs bare, wall |\n"
  printf "|---|---|---|---|---|---|---|\n"
  printf "| `openssl speed ecdsap256`, sign only, 1 core | %.0f signs/s (%s) | %.0f | – | – | – | – |\n", sign, range("openssl", "sign_per_s"), sign
  printf "| bare loop, 1 thread (parse CSR, check signature, IssueLeaf, PEM) | %.0f (%s) | %.0f (%s) | – | – | 1.00 | 1.00 |\n", bare_wall, bare_wall_range, bare_cpu, bare_cpu_range
  if ("bare-2" in count) {
    printf "| bare loop, 2 threads in one process (the same, OpenSSL shared) | %.0f (%s) | %.0f (%s) | – | – | %.2f | %.2f |\n", median("bare-2", "per_s"), range("bare-2", "per_s"), median("bare-2", "per_cpu_s"), range("bare-2", "per_cpu_s"), median("bare-2", "per_cpu_s") / bare_cpu, median("bare-2", "per_s") / bare_wall
  }
  if ("bare-2-log" in count) {
    printf "| bare loop, 2 threads, with the issuance log (no RPC) | %.0f (%s) | %.0f (%s) | – | – | %.2f | %.2f |\n", median("bare-2-log", "per_s"), range("bare-2-log", "per_s"), median("bare-2-log", "per_cpu_s"), range("bare-2-log", "per_cpu_s"), median("bare-2-log", "per_cpu_s") / bare_cpu, median("bare-2-log", "per_s") / bare_wall
  }
  n = 0
  nc = split(clients_list, cl, " "); nd = split(drivers, dl, " ")
  for (k = 1; k <= nc; k++) {
    for (d = 1; d <= nd; d++) {
      n++
      if (dl[d] == "threads") {
        rows[n] = "e2e-" cl[k]
        whats[n] = sprintf("e2e, %d client%s, persistent mTLS channel each, a client thread each", cl[k], cl[k] == 1 ? "" : "s")
      } else {
        rows[n] = "e2e-" dl[d] "-" cl[k]
        whats[n] = sprintf("e2e, %d client%s, persistent mTLS channel each, one client thread for all (async)", cl[k], cl[k] == 1 ? "" : "s")
      }
    }
  }
  rows[++n] = "e2e-per-call-" per_call
  whats[n] = sprintf("e2e, %d clients, CaClient::Issue (new channel + TLS handshake per renewal)", per_call)
  for (k = 1; k <= n; k++) {
    label = rows[k]; what = whats[k]
    if (!(label in count)) continue
    wall = median(label, "per_s"); wall_range = range(label, "per_s")
    cpu = median(label, "per_ca_cpu_s"); cpu_range = range(label, "per_ca_cpu_s")
    p50 = median(label, "p50_ms"); p99 = median(label, "p99_ms")
    ccpu = median(label, "client_cpu_s"); cacpu = median(label, "ca_cpu_s")
    printf "| %s | %.0f (%s) | %.0f per CA CPU-s (%s) | %.1f / %.1f ms | %s | %.2f | %.2f |\n", what, wall, wall_range, cpu, cpu_range, p50, p99, failures(label), cpu / bare_cpu, wall / bare_wall
  }
}' "$RESULTS")
# CPU split of each e2e run (CA vs the bench's own client threads).
CPU_SPLIT=$(awk '
{ for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
  if (f["mode"] == "e2e") printf "%s: CA %.1f CPU-s, bench clients %.1f CPU-s over %.1f s wall\n", f["label"], f["ca_cpu_s"], f["client_cpu_s"], f["wall_s"] }' "$RESULTS")

NPROC=$(nproc)
CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
OPENSSL_VERSION=$(openssl version)
KERNEL=$(uname -r)

SECTION=$(cat <<EOF
## CA issuance

Measured $START_DATE at git $GIT_REV, on $NPROC CPUs ($CPU_MODEL, Linux
$KERNEL), $OPENSSL_VERSION, \`bazel build -c opt\`. Load average (1, 5, 15 min)
$LOAD_BEFORE before and $LOAD_AFTER after: the machine is shared with other
builds, so treat the figures as indicative and compare rows of the same run,
not runs. $ROUNDS rounds of ${SECONDS_PER_RUN} s per row (openssl: 5 s
signing), interleaved; the median, with the spread over rounds in brackets.

\`\`\`sh
$COMMAND_LINE
\`\`\`

$TABLE

What each number includes:

- **openssl speed**: raw ECDSA P-256 signatures per second on one core; no
  X.509 at all. The ceiling for one signing thread.
- **bare loop** (\`ca_issue_bench --mode=bare\`): one thread, in process:
  parse a CSR PEM, verify its signature (one ECDSA verify), read its URI
  SAN, \`CaSigner::IssueLeaf\` (build the X.509-SVID, one ECDSA sign), PEM
  the leaf. 64 keys/CSRs generated before the clock starts; no RPC, no
  authentication, no log. Per CPU-second from \`getrusage\`. The 1-thread
  run is the upper bound the target is quoted against; the 2-thread run
  (\`--threads=2\`) shows what OpenSSL itself loses when two threads of one
  process issue at once, as the CA's gRPC threads do.
- **bare loop with the issuance log** (\`--threads=2 --log-db=FILE\`): the
  2-thread loop plus everything the CA does per certificate except the RPC:
  the row committed to a SQLite issuance log (the CA's \`IssuanceStore\`,
  WAL, \`synchronous=FULL\`, grouped commits with up to 32 rows per thread
  waiting), then the response message (chain + trust bundle) serialized
  and the JSON "issued" line written to a file. The CA with an RPC layer
  that cost nothing: no server could do better than this row.
- **e2e** (\`ca_issue_bench --mode=e2e\`): N client threads, each renewing
  over mTLS in a closed loop against \`meshguard-ca serve\` on 127.0.0.1 with
  a certificate it got beforehand (join token, \`meshguardctl cert
  request\`); each call sends a CSR built before the clock starts for the
  client's own SPIFFE ID, so **client-side key generation and CSR signing
  are not measured**. Per call the CA does: gRPC/HTTP2 over TLS, verifies
  the peer's chain against the bundle and CRL (once per leaf and trust
  bundle; later calls of the same peer hit a cache) and checks its serial
  against the revoked set, parses and verifies the CSR, signs, commits the
  issuance to SQLite (WAL, \`synchronous=FULL\`, on $FS_TYPE here; issuances
  that wait for the log together share one transaction and its fsync, and
  each call returns only once the transaction holding its row has
  committed: $GROUPING), builds the response (chain + trust bundle) and
  writes a JSON log line. Rate limiting is off (\`rate_limit.requests_per_second:
  0\`). "per CA CPU-s" is certificates over the CA process's utime+stime
  from \`/proc/<pid>/stat\` over the run; "wall" is certificates over wall
  time. Latency is per call at the client; a failure of any status code
  is counted and shown. With the persistent channel the TLS handshake
  happens once per client before the clock starts; the per-call row goes
  through \`CaClient::Issue\` unchanged, which builds a new channel (TCP +
  TLS handshake) for every renewal.
- The bench's client threads run on the same $NPROC CPUs as the CA, so at
  4 and 16 clients wall throughput is shared with them; their CPU, per
  round:

\`\`\`
$CPU_SPLIT
\`\`\`

Certificates issued by the CA during the run (its log): $ISSUED_TOTAL.
EOF
)

printf '\n%s\n' "$SECTION"

if [ "$WRITE_DOC" = 1 ]; then
  DOC=docs/BENCHMARKS.md
  mkdir -p docs
  [ -f "$DOC" ] || printf '# Benchmarks\n\nFigures we can stand behind, each with the command that produced it.\n' >"$DOC"
  SECTION_FILE="$WORK/section.md"
  printf '%s\n' "$SECTION" >"$SECTION_FILE"
  # Replace "## CA issuance" up to the next "## " heading, or append.
  awk -v section_file="$SECTION_FILE" '
    function emit(   l) { while ((getline l < section_file) > 0) print l; done = 1 }
    /^## / { if (skipping) { skipping = 0; print "" } }
    /^## CA issuance[[:space:]]*$/ { emit(); skipping = 1; next }
    !skipping { print }
    END { if (!done) { print ""; emit() } }
  ' "$DOC" >"$WORK/doc.md"
  cp "$WORK/doc.md" "$DOC"
  say "wrote the \"## CA issuance\" section of $DOC"
fi
