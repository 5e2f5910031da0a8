#!/usr/bin/env bash
# The gRPC interop suite (docs/interop.md): clients and servers of gRPC's
# interop test service written with three gRPC implementations nobody here
# wrote (gRPC C++ 1.51, grpcio 1.51 for Python, @grpc/grpc-js for Node.js),
# run pair by pair
#   direct: client -> server (h2c), to show the case works without the mesh;
#   mesh:   client -> client-side sidecar's outbound listener (h2c, routed by
#           :authority) -> mTLS -> server-side sidecar's inbound listener ->
#           server (h2c), every sidecar's identity issued by a real
#           meshguard-ca from a one-time join token.
# Each (mode, pair, case) is one JUnit test case, named like
# "mesh/cpp->python/large_unary". In the mesh run the server-side sidecar's
# access log is read as well: every call the pair made came from the client
# sidecar's SPIFFE ID over mTLS, and the compression cases' payloads crossed
# it compressed (a 1 MiB payload of zeros is about 1 KiB gzipped).
#
# Optional, for running a part by hand (bazel run //tests/interop:interop_test):
#   INTEROP_PAIRS="cpp:python node:cpp"  client:server pairs (default: all six
#                                        pairs of different implementations)
#   INTEROP_MODES="direct mesh"          INTEROP_CASES="large_unary,ping_pong"
#   INTEROP_KEEP_LOGS=DIR                copy every log there at the end
#   INTEROP_BUDGET=600                   seconds for the whole run (see BUDGET)
# Ports: the servers take free ports from the kernel; the CA and the four
# sidecars a free block of 20 ports in 20000-31999 (checked before use).
set -uo pipefail
export PATH="/usr/local/bin:/usr/bin:/bin:${PATH:-}"

TEST_NAME=interop_test
JUNIT_CLASS_PREFIX=interop
if [ -n "${TEST_SRCDIR:-}" ]; then
  R="$TEST_SRCDIR/${TEST_WORKSPACE:-meshguard}"
elif [ -d "$0.runfiles/meshguard" ]; then
  R="$0.runfiles/meshguard"
else
  R=$PWD
fi
# The shell tests' JUnit recorder (a data dependency of this test).
# shellcheck source=tests/e2e/junit.sh
source "$R/tests/e2e/junit.sh" || exit 1
# shellcheck source=scripts/lib/mesh.sh
source "$R/scripts/lib/mesh.sh"

PY=/usr/bin/python3  # Debian's, with python3-grpcio (not a pyenv shim)
export PYTHONDONTWRITEBYTECODE=1
IMPLS=(cpp python node)
ALL_CASES=(
  empty_unary large_unary client_streaming server_streaming ping_pong
  half_duplex empty_stream custom_metadata status_code_and_message
  special_status_message unimplemented_method unimplemented_service
  cancel_after_begin cancel_after_first_response timeout_on_sleeping_server
  client_compressed_unary server_compressed_unary client_compressed_streaming
  server_compressed_streaming
)
# Run as a client invocation of their own, so that the mesh run can match
# them to the lines they left in the server sidecar's access log.
COMPRESSION_CASES=" client_compressed_unary server_compressed_unary client_compressed_streaming server_compressed_streaming "
# What an implementation cannot do, as a server: reported as skipped.
declare -A SERVER_SKIPS=(
  [node:server_compressed_unary]="grpc-js servers do not compress responses"
  [node:server_compressed_streaming]="grpc-js servers do not compress responses"
)
TD=cluster.local
# Seconds the whole run may take (Bazel's "large" allows 900); pairs left
# when it is spent fail at once, so that the JUnit file is still written.
BUDGET=${INTEROP_BUDGET:-600}
CLIENT_ID="spiffe://$TD/ns/interop/sa/client"
server_id() { echo "spiffe://$TD/ns/interop/sa/$1-server"; }

if [ -n "${INTEROP_PAIRS:-}" ]; then
  read -r -a PAIRS <<<"$INTEROP_PAIRS"
else
  PAIRS=()
  for c in "${IMPLS[@]}"; do
    for s in "${IMPLS[@]}"; do [ "$c" = "$s" ] || PAIRS+=("$c:$s"); done
  done
fi
read -r -a MODES <<<"${INTEROP_MODES:-direct mesh}"
if [ -n "${INTEROP_CASES:-}" ]; then
  IFS=, read -r -a RUN_CASES <<<"$INTEROP_CASES"
else
  RUN_CASES=("${ALL_CASES[@]}")
fi

# ---- cleanup, on every exit ------------------------------------------------------
# /tmp, not TEST_TMPDIR: the CA's admin socket path must fit sun_path.
WORK=$(mktemp -d /tmp/meshguard-interop.XXXXXX) || exit 1
MESH_WORK="$WORK/mesh"
cleanup() {
  local rc=$?
  set +e
  local stop_start=$SECONDS
  mesh_stop
  echo "everything stopped in $((SECONDS - stop_start))s; ${SECONDS}s in all"
  if [ "$FAILED" = 1 ] || [ "$rc" != 0 ] || [ -n "${INTEROP_KEEP_LOGS:-}" ]; then
    local out="${INTEROP_KEEP_LOGS:-${TEST_UNDECLARED_OUTPUTS_DIR:-}}"
    if [ -n "$out" ]; then
      mkdir -p "$out" && (cd "$WORK" && find . -name '*.log' -exec cp --parents {} "$out"/ \;)
      echo "logs: $out"
    fi
  fi
  rm -rf "$WORK"
  if [ "$rc" != 0 ] && [ "$FAILED" = 0 ]; then
    fail "$TEST_NAME" "the script exited with status $rc before finishing"
  fi
  write_xml
  [ "$FAILED" = 1 ] && exit 1
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A setup step that did not work fails every case it would have run.
SETUP_PROBLEMS=()
setup_problem() {
  echo "SETUP: $*" >&2
  SETUP_PROBLEMS+=("$*")
}

# ---- the implementations -----------------------------------------------------------
declare -A IMPL_OK=([cpp]=1 [python]=1 [node]=1)
declare -A IMPL_WHY=()
if ! err=$("$PY" -c 'import grpc, google.protobuf' 2>&1); then
  IMPL_OK[python]=0
  IMPL_WHY[python]="$PY cannot import grpc and protobuf (scripts/setup.sh installs python3-grpcio and python3-protobuf): ${err##*$'\n'}"
fi
# node_modules is beside the real package.json (installed there by
# scripts/setup.sh; Bazel's runfiles hold only the tracked files).
NODE_DIR=$(dirname "$(readlink -f "$R/tests/interop/node/package.json")")
if ! command -v node >/dev/null 2>&1; then
  IMPL_OK[node]=0
  IMPL_WHY[node]="node not found on PATH (scripts/setup.sh installs nodejs)"
elif [ ! -d "$NODE_DIR/node_modules/@grpc/grpc-js" ] || [ ! -d "$NODE_DIR/node_modules/@grpc/proto-loader" ]; then
  IMPL_OK[node]=0
  IMPL_WHY[node]="$NODE_DIR/node_modules has no @grpc/grpc-js or @grpc/proto-loader: run scripts/setup.sh (npm ci there)"
fi
for impl in "${IMPLS[@]}"; do
  [ "${IMPL_OK[$impl]}" = 1 ] || echo "SETUP: $impl: ${IMPL_WHY[$impl]}" >&2
done

client_cmd() {  # client_cmd IMPL: the command line, without --target etc.
  case "$1" in
    cpp) echo "$R/tests/interop/cpp/interop_client" ;;
    python) echo "$PY $R/tests/interop/python/interop_client.py --proto-dir $R/tests/interop/proto" ;;
    node) echo "node $R/tests/interop/node/interop_client.js --proto-root $R" ;;
  esac
}

declare -A SERVER_PORT=()
start_server() {  # start_server IMPL
  local impl=$1 log="$WORK/$1-server.log" cmd=()
  case "$impl" in
    cpp) cmd=("$R/tests/interop/cpp/interop_server" --listen 127.0.0.1:0) ;;
    python) cmd=("$PY" "$R/tests/interop/python/interop_server.py" --port 0
                 --proto-dir "$R/tests/interop/proto") ;;
    node) cmd=(node "$R/tests/interop/node/interop_server.js" --port 0 --proto-root "$R") ;;
  esac
  mesh_spawn "server_$impl" "$log" "${cmd[@]}"
  local pid_var="MESH_PID_server_$impl"
  if mesh_wait_for "the $impl server" "${!pid_var}" "$log" 30 grep -q '^listening on' "$log"; then
    SERVER_PORT[$impl]=$(awk '/^listening on/{print $3; exit}' "$log")
    echo "$impl server on 127.0.0.1:${SERVER_PORT[$impl]}"
  else
    IMPL_OK[$impl]=0
    IMPL_WHY[$impl]="the $impl server did not start: $(tail -3 "$log" | tr '\n' ' ')"
  fi
}

declare -A NEEDED=()
for pair in "${PAIRS[@]}"; do NEEDED[${pair%%:*}]=1; NEEDED[${pair##*:}]=1; done
for impl in "${IMPLS[@]}"; do
  if [ -n "${NEEDED[$impl]:-}" ] && [ "${IMPL_OK[$impl]}" = 1 ]; then start_server "$impl"; fi
done

# ---- the mesh: meshguard-ca, a client-side sidecar, one sidecar per server ----------------
MESH_CA="$R/identity/ca/meshguard-ca"
MESH_CTL="$R/cli/meshguardctl"  # for mesh_ctl
MESH_SIDECAR="$R/sidecar/meshguard-sidecar"

# ports: BASE+0/+1 CA gRPC/HTTP; sidecar i (0 client, 1.. servers): BASE+2+3i
# admin, +1 outbound, +2 inbound.
pick_ports() {
  local base p ok
  for _ in $(seq 1 30); do
    base=$((20000 + (RANDOM % 120) * 100))
    ok=1
    for p in $(seq "$base" $((base + 19))); do
      if mesh_port_in_use "$p"; then ok=0; break; fi
    done
    if [ "$ok" = 1 ]; then echo "$base"; return 0; fi
  done
  return 1
}

start_sidecar() {  # start_sidecar NAME INDEX SPIFFE_ID [--app ... / --route ...]
  local name=$1 i=$2 id=$3
  shift 3
  local admin=$((PORT_BASE + 2 + 3 * i))
  local dir="$MESH_WORK/$name"
  mkdir -p "$dir"
  local token
  if ! token=$(mesh_ctl token create --spiffe-id "$id" --ttl 10m 2>"$dir/token.log"); then
    setup_problem "meshguardctl token create for $id failed: $(cat "$dir/token.log")"
    return 1
  fi
  mesh_spawn "sidecar_${name//-/_}" "$dir/sidecar.log" "$MESH_SIDECAR" \
    --ca "127.0.0.1:$MESH_CA_PORT" --ca-bundle "$MESH_WORK/ca/bundle.pem" \
    --join-token "$token" --workers 1 --access-log "$dir/access.log" \
    --admin-listen "127.0.0.1:$admin" \
    --outbound-listen "127.0.0.1:$((admin + 1))" \
    --inbound-listen "127.0.0.1:$((admin + 2))" "$@"
}

start_mesh() {
  PORT_BASE=$(pick_ports) || { setup_problem "no free block of 20 ports in 20000-31999"; return 1; }
  MESH_CA_PORT=$PORT_BASE
  mkdir -p "$MESH_WORK"
  if ! "$MESH_CA" init --data-dir "$MESH_WORK/ca" --trust-domain "$TD" >"$MESH_WORK/ca-init.log" 2>&1; then
    setup_problem "meshguard-ca init failed: $(tail -3 "$MESH_WORK/ca-init.log")"
    return 1
  fi
  mesh_spawn ca "$MESH_WORK/ca.log" "$MESH_CA" serve --data-dir "$MESH_WORK/ca" \
    --listen "127.0.0.1:$MESH_CA_PORT" --admin-listen "127.0.0.1:$((PORT_BASE + 1))"
  if ! mesh_wait_for meshguard-ca "$MESH_PID_ca" "$MESH_WORK/ca.log" 30 \
    mesh_http_ok $((PORT_BASE + 1)) /readyz 2>"$MESH_WORK/ca-wait.log"; then
    setup_problem "meshguard-ca did not become ready: $(tail -3 "$MESH_WORK/ca-wait.log" | tr '\n' ' ')"
    return 1
  fi
  local i=1 impl route_list=() names=(client)
  for impl in "${IMPLS[@]}"; do
    [ -n "${SERVER_PORT[$impl]:-}" ] || continue
    route_list+=("$impl-server=127.0.0.1:$((PORT_BASE + 2 + 3 * i + 2))=$(server_id "$impl")")
    start_sidecar "$impl-server" "$i" "$(server_id "$impl")" \
      --app "127.0.0.1:${SERVER_PORT[$impl]}" || return 1
    names+=("$impl-server")
    i=$((i + 1))
  done
  CLIENT_OUT=$((PORT_BASE + 3))
  start_sidecar client 0 "$CLIENT_ID" --route "$(IFS=,; echo "${route_list[*]}")" || return 1
  local name pid_var admin
  i=0
  for name in "${names[@]}"; do
    pid_var="MESH_PID_sidecar_${name//-/_}"
    admin=$((PORT_BASE + 2 + 3 * i))
    if ! mesh_wait_for "the $name sidecar" "${!pid_var}" "$MESH_WORK/$name/sidecar.log" 60 \
      mesh_http_ok "$admin" /readyz 2>"$MESH_WORK/$name/wait.log"; then
      setup_problem "the $name sidecar did not become ready: $(tail -3 "$MESH_WORK/$name/wait.log" | tr '\n' ' ')"
      return 1
    fi
    i=$((i + 1))
  done
  echo "mesh: meshguard-ca on :$MESH_CA_PORT; client sidecar outbound :$CLIENT_OUT;" \
    "routes ${route_list[*]}"
}

# ---- one client run ------------------------------------------------------------------
declare -A RESULT=()  # case -> "pass", "skip<TAB>why" or "fail<TAB>why"

# run_client MODE CLIENT SERVER CASE...: fills RESULT for those cases.
run_client() {
  local mode=$1 client=$2 server=$3
  shift 3
  local target authority=()
  if [ "$mode" = direct ]; then
    target="127.0.0.1:${SERVER_PORT[$server]}"
  else
    target="127.0.0.1:$CLIENT_OUT"
    authority=(--authority "$server-server")
  fi
  local log="$WORK/$mode-$client-$server.log" list
  list=$(IFS=,; echo "$*")
  local cmd
  read -r -a cmd <<<"$(client_cmd "$client")"
  echo "\$ ${cmd[*]##*/} --target $target ${authority[*]} --cases $list" >>"$log"
  local out rc
  # Every call has a 30 s deadline; a client that still hangs is stopped,
  # and never past the suite's budget.
  local limit=$((BUDGET - SECONDS))
  [ $limit -le 180 ] || limit=180
  [ $limit -ge 10 ] || limit=10
  out=$(timeout "$limit" "${cmd[@]}" --target "$target" "${authority[@]}" --cases "$list" 2>>"$log")
  rc=$?
  echo "$out" >>"$log"
  local c line
  for c in "$@"; do
    line=$(grep -E "^(PASS|FAIL) $c( |:)" <<<"$out" | head -1)
    case "$line" in
      PASS*) RESULT[$c]=pass ;;
      FAIL*) RESULT[$c]="fail"$'\t'"${line#FAIL "$c": }" ;;
      *) RESULT[$c]="fail"$'\t'"the $client client gave no result (exit status $rc$([ $rc = 124 ] && echo ", stopped after ${limit}s")): $(tail -2 "$log" | tr '\n' ' ')" ;;
    esac
  done
}

# The access-log lines a sidecar wrote since line FROM, once it has at least
# WANT of them (it writes each when the call ends; give it 3 s).
new_access_lines() {  # new_access_lines FILE FROM WANT
  local n deadline=$((SECONDS + 3))
  while :; do
    n=$(($(wc -l <"$1") - $2))
    if [ "$n" -ge "$3" ] || [ $SECONDS -ge $deadline ]; then break; fi
    sleep 0.1
  done
  tail -n "+$(($2 + 1))" "$1"
}

# The compression cases in the mesh: what the server's sidecar carried.
# Prints "case<TAB>problem" for each case whose payload crossed uncompressed.
check_wire() {  # check_wire ACCESS_LINES
  "$PY" - "$1" <<'PY'
import json, sys
LIMIT = 64 << 10  # the payloads are 1 MiB of zeros; gzipped about 1 KiB
calls = [json.loads(l) for l in sys.argv[1].splitlines() if l.strip()]
checks = {  # case: (method, which bytes)
    "client_compressed_unary": ("UnaryCall", "request_bytes"),
    "server_compressed_unary": ("UnaryCall", "response_bytes"),
    "client_compressed_streaming": ("StreamingInputCall", "request_bytes"),
    "server_compressed_streaming": ("StreamingOutputCall", "response_bytes"),
}
for case, (method, field) in checks.items():
    seen = [c for c in calls if c.get("method") == "/grpc.testing.TestService/" + method]
    big = [c[field] for c in seen if c.get(field, 0) >= LIMIT]
    if not seen:
        print("%s\tthe server's sidecar logged no %s call" % (case, method))
    elif big:
        print("%s\tthe payload crossed the mesh uncompressed: the server's sidecar "
              "carried %s %s of %s" % (case, field, big, method))
PY
}

# What the server's sidecar logged of a pair's calls: each inbound, from the
# client sidecar's identity. Prints a problem, or nothing.
check_peers() {  # check_peers ACCESS_LINES
  "$PY" - "$1" "$CLIENT_ID" <<'PY'
import json, sys
calls = [json.loads(l) for l in sys.argv[1].splitlines() if l.strip()]
bad = [c for c in calls if c.get("direction") != "inbound" or c.get("peer") != sys.argv[2]]
if not calls:
    print("the server's sidecar logged none of the pair's calls")
elif bad:
    print("%d of %d calls were not inbound from %s: %s" % (len(bad), len(calls), sys.argv[2],
          json.dumps(bad[0])))
PY
}

# ---- the runs ------------------------------------------------------------------------
run_pair() {  # run_pair MODE CLIENT SERVER
  local mode=$1 client=$2 server=$3 c impl status msg
  local prefix="$mode/$client->$server"
  RESULT=()
  local why=""
  for impl in "$client" "$server"; do
    [ "${IMPL_OK[$impl]}" = 1 ] || why="${IMPL_WHY[$impl]}"
  done
  if [ "$mode" = mesh ] && [ ${#SETUP_PROBLEMS[@]} -gt 0 ]; then
    why="the mesh did not start: ${SETUP_PROBLEMS[0]}"
  fi
  if [ $SECONDS -ge $BUDGET ]; then
    why="not run: the suite's ${BUDGET}s were spent before this pair (INTEROP_BUDGET)"
  fi
  local plain=() compressed=()
  for c in "${RUN_CASES[@]}"; do
    if [ -n "${SERVER_SKIPS[$server:$c]:-}" ]; then
      RESULT[$c]="skip"$'\t'"${SERVER_SKIPS[$server:$c]}"
    elif [ -n "$why" ]; then
      RESULT[$c]="fail"$'\t'"$why"
    elif [[ $COMPRESSION_CASES == *" $c "* ]]; then
      compressed+=("$c")
    else
      plain+=("$c")
    fi
  done
  local access="$MESH_WORK/$server-server/access.log" from=0 lines
  if [ "$mode" = mesh ] && [ -z "$why" ]; then from=$(wc -l <"$access"); fi
  [ ${#plain[@]} -eq 0 ] || run_client "$mode" "$client" "$server" "${plain[@]}"
  if [ ${#compressed[@]} -gt 0 ]; then
    local before=0
    [ "$mode" = mesh ] && before=$(wc -l <"$access")
    run_client "$mode" "$client" "$server" "${compressed[@]}"
    if [ "$mode" = mesh ]; then
      lines=$(new_access_lines "$access" "$before" "${#compressed[@]}")
      local case_name problem
      while IFS=$'\t' read -r case_name problem; do
        [ -n "$case_name" ] || continue
        if [ "${RESULT[$case_name]:-}" = pass ]; then
          RESULT[$case_name]="fail"$'\t'"$problem"
        fi
      done < <(check_wire "$lines")
    fi
  fi
  for c in "${RUN_CASES[@]}"; do
    IFS=$'\t' read -r status msg <<<"${RESULT[$c]}"
    case "$status" in
      pass) pass "$prefix/$c" ;;
      skip) skip "$prefix/$c" "$msg" ;;
      *) fail "$prefix/$c" "$msg" ;;
    esac
  done
  if [ "$mode" = mesh ]; then
    if [ -n "$why" ]; then
      fail "$prefix/through_sidecars" "$why"
    else
      lines=$(new_access_lines "$access" "$from" 1)
      local problem
      problem=$(check_peers "$lines")
      if [ -z "$problem" ]; then
        pass "$prefix/through_sidecars"
      else
        fail "$prefix/through_sidecars" "$problem"
      fi
    fi
  fi
}

echo "servers up after ${SECONDS}s"
for mode in "${MODES[@]}"; do
  if [ "$mode" = mesh ]; then
    start=$SECONDS
    start_mesh >"$WORK/mesh-start.log" 2>&1 || true
    cat "$WORK/mesh-start.log"
    echo "mesh up after $((SECONDS - start))s"
  fi
  for pair in "${PAIRS[@]}"; do
    start=$SECONDS
    run_pair "$mode" "${pair%%:*}" "${pair##*:}"
    echo "== $mode ${pair%%:*}->${pair##*:}: $((SECONDS - start))s"
  done
done
