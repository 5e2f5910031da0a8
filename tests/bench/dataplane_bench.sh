#!/usr/bin/env bash
# Data-plane benchmark: a meshguard sidecar pair against direct calls and
# against the two proxies users could pick instead, each as a pair doing the
# same job (h2c in, TLS 1.3 with client certificates to the peer, peer
# verified, h2c out to the app):
#
#   direct    loadgen -> echo_server
#   meshguard loadgen -> sidecar A (outbound, h2c) =mTLS=> sidecar B (inbound) -> echo_server
#   nginx     loadgen -> nginx A (http2)  =grpcs, client cert=> nginx B (ssl_verify_client on) -> echo_server
#   haproxy   loadgen -> haproxy A (proto h2) =ssl verify required, crt=> haproxy B (verify required) -> echo_server
#
# One worker/thread per proxy (meshguard --workers 1, nginx worker_processes 1,
# haproxy nbthread 1), so CPU figures are per process. Every setup runs on
# loopback, and all setups are measured interleaved in one run: for each
# scenario, REPS rounds over the setups (starting each round at a different
# setup); the tables show medians over the rounds.
#
#   tests/bench/dataplane_bench.sh            build, install nginx/haproxy if
#                                             missing, measure, write the
#                                             "## Data plane" section of
#                                             docs/BENCHMARKS.md
#   DURATION=5 WARMUP=1 REPS=3 tests/bench/dataplane_bench.sh   (the defaults)
#   NO_DOC=1 ...                              print the section, leave the doc
#   KEEP_WORK=1 ...                           keep the work folder (configs, logs, raw results)
#
# Installs Debian's nginx and haproxy with apt-get when they are missing (the
# benchmark is not part of the test suite, so scripts/setup.sh does not).
# Every process it starts is stopped on exit, also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)

DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
REPS=${REPS:-3}
PACED_RATE=${PACED_RATE:-1000}
OUTPUT_BASE=${DPBENCH_OUTPUT_BASE:-/root/.cache/bazel_ob/dpbench}
BAZEL=(bazel --output_base="$OUTPUT_BASE")
COMMAND_LINE="DURATION=$DURATION WARMUP=$WARMUP REPS=$REPS tests/bench/dataplane_bench.sh"

# The system Python (a version manager's shim can take a second to start).
PYTHON=/usr/bin/python3; [ -x "$PYTHON" ] || PYTHON=python3

log() { printf '[dataplane_bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# --- processes: every one we start is recorded and stopped on exit --------
PIDS=()
LG_PID=""  # the loadgen running now, if any
WORK=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "$LG_PID" ] && PIDS+=("$LG_PID")
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 30); do
    local alive=0
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null && { kill -KILL "$pid" 2>/dev/null || true; }
  done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    if [ "$rc" != 0 ] && [ -z "${KEEP_WORK:-}" ]; then
      log "failed (exit $rc); logs follow"
      for f in "$WORK"/*.log "$WORK"/*/error.log; do
        [ -s "$f" ] && { echo "--- $f" >&2; tail -15 "$f" >&2; }
      done
    fi
    [ -z "${KEEP_WORK:-}" ] && rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- tools -----------------------------------------------------------------
if ! command -v nginx >/dev/null || ! command -v haproxy >/dev/null; then
  log "installing nginx and haproxy (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get install -y -q nginx haproxy >/dev/null 2>&1 || {
    $SUDO apt-get update -q >/dev/null
    $SUDO apt-get install -y -q nginx haproxy >/dev/null
  }
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)

log "building (bazel -c opt, output base $OUTPUT_BASE)"
TARGETS=(//tests/testing:echo_server //tests/bench:loadgen
         //sidecar:meshguard-sidecar //identity/ca:meshguard-ca //cli:meshguardctl)
if ! "${BAZEL[@]}" build -c opt --jobs=2 "${TARGETS[@]}" >/tmp/dataplane_bench.build.log 2>&1; then
  grep -E '^(ERROR|FAILED)' /tmp/dataplane_bench.build.log | head -20 >&2
  die "build failed; full log in /tmp/dataplane_bench.build.log"
fi
BIN=$("${BAZEL[@]}" info -c opt bazel-bin 2>/dev/null)
ECHO_SERVER="$BIN/tests/testing/echo_server"
LOADGEN="$BIN/tests/bench/loadgen"
SIDECAR="$BIN/sidecar/meshguard-sidecar"
CA="$BIN/identity/ca/meshguard-ca"
CTL="$BIN/cli/meshguardctl"

WORK=$(mktemp -d /tmp/dataplane_bench.XXXXXX)
CLK_TCK=$(getconf CLK_TCK)

# Free loopback ports, all picked at once so that they differ.
read -r -a PORTS <<<"$("$PYTHON" - <<'PY'
import socket
socks = []
for _ in range(16):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
)"
P_ECHO=${PORTS[0]}
P_CA=${PORTS[1]}; P_CA_ADMIN=${PORTS[2]}
P_MA_OUT=${PORTS[3]}; P_MA_IN=${PORTS[4]}; P_MA_ADMIN=${PORTS[5]}
P_MB_OUT=${PORTS[6]}; P_MB_IN=${PORTS[7]}; P_MB_ADMIN=${PORTS[8]}
P_NA=${PORTS[9]}; P_NB=${PORTS[10]}
P_HA=${PORTS[11]}; P_HB=${PORTS[12]}

wait_port() {  # host:port, what
  local hp=$1
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/${hp%:*}/${hp#*:}") 2>/dev/null && return 0
    sleep 0.05
  done
  die "$2 is not listening on $hp"
}
wait_http() {  # url, what
  for _ in $(seq 1 300); do
    curl -fsS "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "$2 did not become ready ($1)"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# --- the app -----------------------------------------------------------------
log "starting echo_server on 127.0.0.1:$P_ECHO"
"$ECHO_SERVER" --listen="127.0.0.1:$P_ECHO" >"$WORK/echo.log" 2>&1 &
PIDS+=($!)
wait_port "127.0.0.1:$P_ECHO" echo_server

# --- meshguard pair ----------------------------------------------------------
log "starting meshguard-ca and a meshguard sidecar pair"
"$CA" init --data-dir "$WORK/ca" --trust-domain cluster.local >"$WORK/ca-init.log" 2>&1
"$CA" serve --data-dir "$WORK/ca" --listen "127.0.0.1:$P_CA" \
  --admin-listen "127.0.0.1:$P_CA_ADMIN" >"$WORK/ca.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$P_CA_ADMIN/readyz" meshguard-ca
CTLG=(--ca "127.0.0.1:$P_CA" --ca-bundle "$WORK/ca/bundle.pem" --admin-socket "$WORK/ca/admin.sock")
TOKEN_A=$("$CTL" "${CTLG[@]}" token create --spiffe-id spiffe://cluster.local/ns/bench/sa/client --ttl 10m 2>>"$WORK/ctl.log")
TOKEN_B=$("$CTL" "${CTLG[@]}" token create --spiffe-id spiffe://cluster.local/ns/bench/sa/server --ttl 10m 2>>"$WORK/ctl.log")
"$SIDECAR" --ca "127.0.0.1:$P_CA" --ca-bundle "$WORK/ca/bundle.pem" --join-token "$TOKEN_B" \
  --app "127.0.0.1:$P_ECHO" --inbound-listen "127.0.0.1:$P_MB_IN" \
  --outbound-listen "127.0.0.1:$P_MB_OUT" --admin-listen "127.0.0.1:$P_MB_ADMIN" \
  --workers 1 --access-log off >"$WORK/sidecar-b.log" 2>&1 &
PID_MB=$!; PIDS+=($PID_MB)
"$SIDECAR" --ca "127.0.0.1:$P_CA" --ca-bundle "$WORK/ca/bundle.pem" --join-token "$TOKEN_A" \
  --app "127.0.0.1:$P_ECHO" --inbound-listen "127.0.0.1:$P_MA_IN" \
  --outbound-listen "127.0.0.1:$P_MA_OUT" --admin-listen "127.0.0.1:$P_MA_ADMIN" \
  --route "bench=127.0.0.1:$P_MB_IN=spiffe://cluster.local/ns/bench/sa/server" \
  --workers 1 --access-log off >"$WORK/sidecar-a.log" 2>&1 &
PID_MA=$!; PIDS+=($PID_MA)
wait_http "http://127.0.0.1:$P_MB_ADMIN/readyz" "sidecar B"
wait_http "http://127.0.0.1:$P_MA_ADMIN/readyz" "sidecar A"

# --- certificates for the baselines (same key type as meshguard: P-256) ----
log "generating a CA and two leaf certificates for nginx and haproxy"
C="$WORK/certs"; mkdir -p "$C"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$C/ca.key" 2>/dev/null
openssl req -x509 -new -key "$C/ca.key" -subj /CN=bench-ca -days 2 -out "$C/ca.pem" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
for leaf in client server; do
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$C/$leaf.key" 2>/dev/null
  openssl req -new -key "$C/$leaf.key" -subj "/CN=$leaf.bench" -out "$C/$leaf.csr" 2>/dev/null
  cat >"$C/$leaf.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=DNS:$leaf.bench,URI:spiffe://cluster.local/ns/bench/sa/$leaf
EOF
  openssl x509 -req -in "$C/$leaf.csr" -CA "$C/ca.pem" -CAkey "$C/ca.key" -CAcreateserial \
    -days 2 -extfile "$C/$leaf.ext" -out "$C/$leaf.pem" 2>/dev/null
  cat "$C/$leaf.pem" "$C/$leaf.key" >"$C/$leaf.combined.pem"
done

# --- nginx pair ----------------------------------------------------------------
USER_LINE=""; [ "$(id -u)" = 0 ] && USER_LINE="user root;"
nginx_conf() {  # dir, http block body
  mkdir -p "$1"
  cat >"$1/nginx.conf" <<EOF
$USER_LINE
worker_processes 1;
pid $1/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $1/tmp_body;
  proxy_temp_path $1/tmp_proxy;
  fastcgi_temp_path $1/tmp_fastcgi;
  uwsgi_temp_path $1/tmp_uwsgi;
  scgi_temp_path $1/tmp_scgi;
  keepalive_requests 100000000;
  keepalive_timeout 600s;
  client_max_body_size 4m;
$2
}
EOF
}
nginx_conf "$WORK/nginx-a" "
  upstream peer {
    server 127.0.0.1:$P_NB;
    keepalive 64;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
  }
  server {
    listen 127.0.0.1:$P_NA http2;
    location / {
      grpc_pass grpcs://peer;
      grpc_ssl_protocols TLSv1.3;
      grpc_ssl_certificate $C/client.pem;
      grpc_ssl_certificate_key $C/client.key;
      grpc_ssl_trusted_certificate $C/ca.pem;
      grpc_ssl_verify on;
      grpc_ssl_verify_depth 2;
      grpc_ssl_name server.bench;
      grpc_ssl_server_name on;
      grpc_ssl_session_reuse on;
    }
  }"
nginx_conf "$WORK/nginx-b" "
  upstream app {
    server 127.0.0.1:$P_ECHO;
    keepalive 64;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
  }
  server {
    listen 127.0.0.1:$P_NB ssl http2;
    ssl_protocols TLSv1.3;
    ssl_certificate $C/server.pem;
    ssl_certificate_key $C/server.key;
    ssl_client_certificate $C/ca.pem;
    ssl_verify_client on;
    ssl_verify_depth 2;
    location / {
      grpc_pass grpc://app;
    }
  }"
log "starting the nginx pair ($("$NGINX" -v 2>&1 | sed 's/.*: //'))"
for side in a b; do
  "$NGINX" -p "$WORK/nginx-$side" -c "$WORK/nginx-$side/nginx.conf" \
    -e "$WORK/nginx-$side/error.log" -g 'daemon off;' >"$WORK/nginx-$side.log" 2>&1 &
  PIDS+=($!)
  eval "PID_N${side^^}=$!"
done
wait_port "127.0.0.1:$P_NA" "nginx A"
wait_port "127.0.0.1:$P_NB" "nginx B"
nginx_pids() {  # master pid -> "master worker..."
  local children
  children=$(pgrep -P "$1" | tr '\n' ' ')
  echo "$1 $children"
}
sleep 0.3
NA_PIDS=$(nginx_pids "$PID_NA"); NB_PIDS=$(nginx_pids "$PID_NB")
for p in $NA_PIDS $NB_PIDS; do PIDS+=("$p"); done  # workers too, in case a master dies

# --- haproxy pair --------------------------------------------------------------
cat >"$WORK/haproxy-a.cfg" <<EOF
global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 600s
  timeout server 600s
  http-reuse always
frontend outbound
  bind 127.0.0.1:$P_HA proto h2
  default_backend peer
backend peer
  http-reuse always
  server peer 127.0.0.1:$P_HB ssl verify required crt $C/client.combined.pem ca-file $C/ca.pem alpn h2 sni str(server.bench) verifyhost server.bench ssl-min-ver TLSv1.3
EOF
cat >"$WORK/haproxy-b.cfg" <<EOF
global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 600s
  timeout server 600s
  http-reuse always
frontend inbound
  bind 127.0.0.1:$P_HB ssl crt $C/server.combined.pem ca-file $C/ca.pem verify required alpn h2 ssl-min-ver TLSv1.3
  default_backend app
backend app
  http-reuse always
  server app 127.0.0.1:$P_ECHO proto h2
EOF
log "starting the haproxy pair ($("$HAPROXY" -v | head -1 | awk '{print $3}'))"
"$HAPROXY" -db -f "$WORK/haproxy-b.cfg" >"$WORK/haproxy-b.log" 2>&1 &
PID_HB=$!; PIDS+=($PID_HB)
"$HAPROXY" -db -f "$WORK/haproxy-a.cfg" >"$WORK/haproxy-a.log" 2>&1 &
PID_HA=$!; PIDS+=($PID_HA)
wait_port "127.0.0.1:$P_HA" "haproxy A"
wait_port "127.0.0.1:$P_HB" "haproxy B"

# --- per-setup facts -------------------------------------------------------------
declare -A TARGET=(
  [direct]="127.0.0.1:$P_ECHO" [meshguard]="127.0.0.1:$P_MA_OUT"
  [nginx]="127.0.0.1:$P_NA" [haproxy]="127.0.0.1:$P_HA")
declare -A SIDE_A=([direct]="" [meshguard]="$PID_MA" [nginx]="$NA_PIDS" [haproxy]="$PID_HA")
declare -A SIDE_B=([direct]="" [meshguard]="$PID_MB" [nginx]="$NB_PIDS" [haproxy]="$PID_HB")
SETUPS=(direct meshguard nginx haproxy)

cpu_ticks() {  # pids... -> utime+stime summed
  local total=0 p f
  for p in "$@"; do
    # Fields after the "(comm)" field: state is 3, utime 14, stime 15.
    f=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null) || continue
    set -- $f
    total=$((total + ${12} + ${13}))
  done
  echo "$total"
}
status_field() {  # field pids... -> summed value (kB for VmRSS)
  local field=$1 total=0 p v; shift
  for p in "$@"; do
    v=$(awk -v f="$field:" '$1 == f {print $2}' "/proc/$p/status" 2>/dev/null || true)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}
mem_row() {  # phase -> lines "mem PHASE SETUP SIDE rss_kb threads"
  local phase=$1 s
  for s in meshguard nginx haproxy; do
    echo "mem $phase $s a $(status_field VmRSS ${SIDE_A[$s]}) $(status_field Threads ${SIDE_A[$s]})"
    echo "mem $phase $s b $(status_field VmRSS ${SIDE_B[$s]}) $(status_field Threads ${SIDE_B[$s]})"
  done
}

RESULTS="$WORK/results.txt"
: >"$RESULTS"
sleep 1
mem_row idle >>"$RESULTS"

# run_one SETUP SCENARIO CONNS STREAMS PAYLOAD RATE DURATION WARMUP
run_one() {
  local setup=$1 scen=$2 conns=$3 streams=$4 payload=$5 rate=$6 dur=$7 warm=$8
  local a_before b_before a_after b_after out rc=0 mid
  a_before=$(cpu_ticks ${SIDE_A[$setup]}); b_before=$(cpu_ticks ${SIDE_B[$setup]})
  "$LOADGEN" --target "${TARGET[$setup]}" --authority bench --connections "$conns" \
    --streams "$streams" --payload "$payload" --rate "$rate" --duration "$dur" \
    --warmup "$warm" >"$WORK/run.json" 2>"$WORK/run.err" &
  LG_PID=$!
  # Loaded memory: sampled half-way through the measured window.
  mid=$(awk -v w="$warm" -v d="$dur" 'BEGIN { print w + d / 2 }')
  sleep "$mid"
  if [ "$setup" != direct ]; then
    echo "mem loaded $setup a $(status_field VmRSS ${SIDE_A[$setup]}) $(status_field Threads ${SIDE_A[$setup]})" >>"$RESULTS"
    echo "mem loaded $setup b $(status_field VmRSS ${SIDE_B[$setup]}) $(status_field Threads ${SIDE_B[$setup]})" >>"$RESULTS"
  fi
  wait "$LG_PID" || rc=$?
  LG_PID=""
  a_after=$(cpu_ticks ${SIDE_A[$setup]}); b_after=$(cpu_ticks ${SIDE_B[$setup]})
  out=$(tail -1 "$WORK/run.json")
  if [ "$rc" != 0 ] || [ -z "$out" ]; then
    log "loadgen against $setup ($scen) exited $rc: $(tr '\n' ' ' <"$WORK/run.err") $out"
    [ -z "$out" ] && out='{"rps":0,"errors":-1,"total_calls":0}'
  fi
  echo "run $setup $scen $((a_after - a_before)) $((b_after - b_before)) $out" >>"$RESULTS"
  printf '  %-9s %-10s %s\n' "$setup" "$scen" \
    "$(echo "$out" | sed -E 's/.*"rps":([0-9.]+),"p50_us":([0-9]+),"p90_us":[0-9]+,"p99_us":([0-9]+).*"errors":([-0-9]+),.*/rps=\1 p50=\2us p99=\3us errors=\4/')" >&2
}

# Smoke: every setup must answer before anything is measured.
log "smoke test of every setup"
for s in "${SETUPS[@]}"; do
  "$LOADGEN" --target "${TARGET[$s]}" --authority bench --connections 1 --streams 4 \
    --payload 64 --duration 0.5 --warmup 0.2 >"$WORK/smoke-$s.json" 2>"$WORK/smoke-$s.err" \
    || die "$s does not serve calls: $(cat "$WORK/smoke-$s.err") $(cat "$WORK/smoke-$s.json")"
done

# name conns streams payload rate
SCENARIOS=(
  "1x64 1 1 64 0"
  "1x16k 1 1 16384 0"
  "32x64 4 32 64 0"
  "32x16k 4 32 16384 0"
  "paced 4 16 64 $PACED_RATE"
)
log "measuring: ${#SCENARIOS[@]} scenarios x $REPS rounds x setups, ${WARMUP}s warm-up + ${DURATION}s each"
for sc in "${SCENARIOS[@]}"; do
  read -r name conns streams payload rate <<<"$sc"
  for rep in $(seq 1 "$REPS"); do
    n=${#SETUPS[@]}
    for i in $(seq 0 $((n - 1))); do
      s=${SETUPS[$(((i + rep - 1) % n))]}
      [ "$rate" != 0 ] && [ "$s" = direct ] && continue
      run_one "$s" "$name" "$conns" "$streams" "$payload" "$rate" "$DURATION" "$WARMUP"
    done
  done
done
sleep 2
mem_row after >>"$RESULTS"
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report --------------------------------------------------------------------
SECTION="$WORK/section.md"
GIT_REV="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- sidecar identity 2>/dev/null || echo ' (sidecar/ or identity/ with uncommitted changes)')"
export CLK_TCK REPS WARMUP DURATION PACED_RATE COMMAND_LINE LOAD_BEFORE LOAD_AFTER GIT_REV
export RUN_DATE="$(date -u '+%Y-%m-%d %H:%M UTC')" NPROC="$(nproc)"
export CPU_MODEL="$(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)"
export VERSIONS="nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///'), HAProxy $("$HAPROXY" -v | head -1 | awk '{print $3}'), $(openssl version | awk '{print $1, $2}')"
"$PYTHON" - "$RESULTS" "$SECTION" <<'PY'
import json, os, statistics, sys
E = os.environ
from collections import defaultdict

results, out = sys.argv[1], sys.argv[2]
tick_us = 1e6 / int(E["CLK_TCK"])
runs = defaultdict(list)          # (setup, scen) -> [dict]
mem = defaultdict(list)           # (phase, setup, side) -> [(rss_kb, threads)]
for line in open(results):
    parts = line.split(" ", 5)
    if parts[0] == "mem":
        _, phase, setup, side, rss, thr = line.split()
        mem[(phase, setup, side)].append((int(rss), int(thr)))
        continue
    _, setup, scen, ta, tb, js = parts
    d = json.loads(js)
    calls = max(d.get("total_calls", 0), 1)
    d["cpu_a"] = int(ta) * tick_us / calls
    d["cpu_b"] = int(tb) * tick_us / calls
    d["cpu_pair"] = d["cpu_a"] + d["cpu_b"]
    d["cpu_proxy"] = d["cpu_pair"] / 2
    d["cpu_a_rate"] = int(ta) * tick_us / 1e3 / d.get("wall_s", 1)   # ms CPU per s
    d["cpu_b_rate"] = int(tb) * tick_us / 1e3 / d.get("wall_s", 1)
    runs[(setup, scen)].append(d)

def med(setup, scen, key):
    v = [d.get(key, 0) for d in runs[(setup, scen)]]
    return statistics.median(v) if v else float("nan")

def errs(setup, scen):
    return sum(max(d.get("errors", 0), 0) for d in runs[(setup, scen)]) + \
        sum(1 for d in runs[(setup, scen)] if d.get("errors", 0) < 0)

proxies = ["meshguard", "nginx", "haproxy"]
scen_titles = {
    "1x64": "1 stream, 1 connection, 64 B",
    "1x16k": "1 stream, 1 connection, 16 KiB",
    "32x64": "32 streams over 4 connections, 64 B",
    "32x16k": "32 streams over 4 connections, 16 KiB",
}
L = []
w = L.append
w("## Data plane")
w("")
w("Unary Echo calls (tests/testing/echo.proto) from `loadgen` (gRPC C++, closed")
w("loop) to `echo_server`: directly, and through a pair of proxies doing the same")
w("job: h2c in, TLS 1.3 with a client certificate to the peer proxy (peer")
w("verified, P-256 keys), h2c out to the app. One worker/thread per proxy")
w("(meshguard `--workers 1`, nginx `worker_processes 1`, haproxy `nbthread 1`).")
w("Setups interleaved round-robin within each scenario, %s rounds, medians" % E["REPS"])
w("shown; %s s warm-up + %s s measured per run. Every call's status is" % (E["WARMUP"], E["DURATION"]))
w("checked (errors column: non-OK calls over all rounds).")
w("")
w("```")
w(E["COMMAND_LINE"])
w("```")
w("")
w("- date: %s; git: %s" % (E["RUN_DATE"], E["GIT_REV"]))
w("- machine: %s CPUs, %s; load average (1/5/15 min) before %s, after %s" % (E["NPROC"], E["CPU_MODEL"], E["LOAD_BEFORE"], E["LOAD_AFTER"]))
w("- %s; all on loopback, load generator and app on the same cores" % E["VERSIONS"])
load_before = float(E["LOAD_BEFORE"].split()[0]); load_after = float(E["LOAD_AFTER"].split()[0])
ncpu = int(E["NPROC"])
if max(load_before, load_after) > ncpu * 0.5:
    w("- **noisy**: the machine was shared (load average above %.0f%% of its %d CPUs" % (50, ncpu))
    w("  before or after the run), so absolute figures and ratios move between runs;")
    w("  the interleaving keeps the comparison fair, not precise.")
w("- the script installs Debian's nginx and haproxy with apt-get when they are")
w("  missing (they are not in scripts/setup.sh: the benchmark is not a test).")
w("- all processes share the machine's %s CPUs: loadgen and echo_server get the" % E["NPROC"])
w("  whole machine in the direct setup and share it with two proxy processes in")
w("  the others, so throughput ratios to direct measure CPU per call as much as")
w("  proxy design. loadgen uses one polling thread.")
w("- CPU µs per call per proxy: utime+stime from /proc/PID/stat (nginx: master +")
w("  worker) over the whole loadgen run divided by every call it completed; the")
w("  pair's total / 2, and each side (A: client side, B: server side). Resolution")
w("  is one clock tick (%d µs) per run." % tick_us)
w("")

def better(scen, key, lower=True):
    f = min if lower else max
    return f(["nginx", "haproxy"], key=lambda s: med(s, scen, key))

targets = []
for scen, title in scen_titles.items():
    d50 = med("direct", scen, "p50_us"); drps = med("direct", scen, "rps")
    b_lat = min(["nginx", "haproxy"], key=lambda s: med(s, scen, "p50_us") - d50)
    b_rps = better(scen, "rps", lower=False)
    b_cpu = better(scen, "cpu_proxy")
    b_add = med(b_lat, scen, "p50_us") - d50
    w("### %s" % title)
    w("")
    w("| setup | RPS | p50 µs | p99 µs | added p50 µs | RPS / direct | RPS / better baseline (%s) | added p50 / better baseline's (%s) | CPU µs/call/proxy | A / B | CPU / HAProxy's | errors |" % (b_rps, b_lat))
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in ["direct"] + proxies:
        rps = med(s, scen, "rps"); p50 = med(s, scen, "p50_us"); p99 = med(s, scen, "p99_us")
        if s == "direct":
            w("| direct | %.0f | %.0f | %.0f | – | 1.00 | %.2f | – | – | – | – | %d |" % (
                rps, p50, p99, rps / med(b_rps, scen, "rps"), errs(s, scen)))
            continue
        add = p50 - d50
        cpu = med(s, scen, "cpu_proxy")
        w("| %s | %.0f | %.0f | %.0f | %.0f | %.2f | %.2f | %.2f | %.0f | %.0f / %.0f | %.2f | %d |" % (
            "**meshguard**" if s == "meshguard" else s, rps, p50, p99, add, rps / drps,
            rps / med(b_rps, scen, "rps"), add / b_add if b_add > 0 else float("nan"),
            cpu, med(s, scen, "cpu_a"), med(s, scen, "cpu_b"),
            cpu / med("haproxy", scen, "cpu_proxy"), errs(s, scen)))
    w("")
    m_add = med("meshguard", scen, "p50_us") - d50
    targets.append(("added p50 ≤ 0.75 × better baseline's (%s)" % b_lat, title,
                    "%.0f µs vs %.0f µs (%.3fx)" % (m_add, b_add, m_add / b_add if b_add > 0 else float("nan")),
                    m_add <= 0.75 * b_add))
    mc, hc = med("meshguard", scen, "cpu_proxy"), med("haproxy", scen, "cpu_proxy")
    targets.append(("CPU per call ≤ 0.8 × HAProxy's", title,
                    "%.0f µs vs %.0f µs (%.3fx)" % (mc, hc, mc / hc), mc <= 0.8 * hc))
    if scen.startswith("32"):
        mr = med("meshguard", scen, "rps")
        targets.append(("throughput ≥ 0.6 × direct", title,
                        "%.0f vs %.0f RPS (%.3fx)" % (mr, drps, mr / drps), mr >= 0.6 * drps))

RATE = E["PACED_RATE"]
w("### CPU at %s evenly paced calls/s" % RATE)
w("")
w("`loadgen --rate %s` (16 streams over 4 connections, 64 B): CPU time per" % RATE)
w("second of each proxy process, i.e. ms of CPU per %s calls/s (100 ms/s = 10%% of one core)." % RATE)
w("")
w("| setup | achieved calls/s | p50 µs | p99 µs | CPU ms/s per proxy | A / B | / better baseline | / HAProxy's | errors |")
w("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for s in proxies:
    for d in runs[(s, "paced")]:
        d["cpu_rate_proxy"] = (d["cpu_a_rate"] + d["cpu_b_rate"]) / 2
b_pace = min(["nginx", "haproxy"], key=lambda s: med(s, "paced", "cpu_rate_proxy"))
for s in proxies:
    c = med(s, "paced", "cpu_rate_proxy")
    w("| %s | %.0f | %.0f | %.0f | %.1f | %.1f / %.1f | %.2f (%s) | %.2f | %d |" % (
        "**meshguard**" if s == "meshguard" else s, med(s, "paced", "rps"),
        med(s, "paced", "p50_us"), med(s, "paced", "p99_us"), c,
        med(s, "paced", "cpu_a_rate"), med(s, "paced", "cpu_b_rate"),
        c / med(b_pace, "paced", "cpu_rate_proxy"), b_pace,
        c / med("haproxy", "paced", "cpu_rate_proxy"), errs(s, "paced")))
mc, hc = med("meshguard", "paced", "cpu_rate_proxy"), med("haproxy", "paced", "cpu_rate_proxy")
targets.append(("CPU per call ≤ 0.8 × HAProxy's", "paced %s calls/s" % RATE,
                "%.1f vs %.1f ms/s (%.3fx)" % (mc, hc, mc / hc), mc <= 0.8 * hc))
w("")

w("### Memory and threads")
w("")
w("VmRSS and Threads from /proc/PID/status (nginx: master + worker summed): idle")
w("after start, loaded (largest sample half-way through a measured run), and idle")
w("again after all runs.")
w("")
w("| process | idle RSS MB | loaded RSS MB | after RSS MB | threads idle / loaded |")
w("|---|---:|---:|---:|---:|")
def mb(kb): return kb / 1024.0
for s in proxies:
    for side, label in (("a", "client side"), ("b", "server side")):
        idle = mem[("idle", s, side)][0]; after = mem[("after", s, side)][0]
        loaded = max(mem[("loaded", s, side)] or [(0, 0)])
        w("| %s %s (%s) | %.1f | %.1f | %.1f | %d / %d |" % (
            s, side.upper(), label, mb(idle[0]), mb(loaded[0]), mb(after[0]), idle[1],
            max(t for _, t in mem[("loaded", s, side)] or [(0, 0)])))
for side in ("a", "b"):
    rss = mem[("idle", "meshguard", side)][0][0]
    targets.append(("sidecar idle RSS < 10 MB", "sidecar %s" % side.upper(),
                    "%.1f MB" % mb(rss), rss < 10 * 1024))
w("")
w("### Targets")
w("")
w("| target | scenario | measured | verdict |")
w("|---|---|---|---|")
for t, scen, val, ok in targets:
    w("| %s | %s | %s | %s |" % (t, scen, val, "met" if ok else "**not met**"))
w("")
open(out, "w").write("\n".join(L) + "\n")
PY

if [ -n "${NO_DOC:-}" ]; then
  cat "$SECTION"
  exit 0
fi
# Replace only our section: another script writes other sections of the same
# file, so re-read it right before writing.
DOC="$ROOT/docs/BENCHMARKS.md"
"$PYTHON" - "$DOC" "$SECTION" <<'PY'
import os, re, sys
doc, section_path = sys.argv[1], sys.argv[2]
section = open(section_path).read()
text = open(doc).read() if os.path.exists(doc) else "# Benchmarks\n"
m = re.search(r"^## Data plane\s*$", text, re.M)
if m:
    nxt = re.search(r"^## ", text[m.end():], re.M)
    end = m.end() + nxt.start() if nxt else len(text)
    text = text[:m.start()] + section + ("\n" if nxt else "") + text[end:]
else:
    text = text.rstrip("\n") + "\n\n" + section
tmp = doc + ".dataplane.tmp"
open(tmp, "w").write(text)
os.replace(tmp, doc)
PY
log "wrote the Data plane section of docs/BENCHMARKS.md"
cat "$SECTION"
