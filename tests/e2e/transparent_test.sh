#!/usr/bin/env bash
# End-to-end: transparent interception between two "pods".
#
# Two network namespaces A and B (the pods), joined by a veth pair
# (A 10.250.0.1/24, B 10.250.0.2/24; these addresses exist only inside the
# namespaces this test makes, and nothing is routed out of them). Each pod
# has loopback up, the iptables rules of deploy/iptables/meshguard-iptables.sh
# and a meshguard-sidecar running as uid 1337 (the excluded uid). A runs
# meshguard-ca too (see "The CA" below), B runs echo_server on 0.0.0.0:8080.
#
# The app in A (echo_client, plain h2c, knows nothing of the mesh) dials
# 10.250.0.2:8080 directly. Checked:
#   - the call succeeds, and B's app saw A's SPIFFE ID in
#     x-forwarded-client-cert (so A's sidecar dialed the original destination
#     over mTLS and B's sidecar took the redirected connection);
#   - on B's veth, port 8080 carried a TLS handshake (first client bytes
#     0x16 0x03) and never the HTTP/2 preface "PRI * HTTP/2.0" (tcpdump);
#   - B's metrics count the inbound call with A's principal;
#   - a call B's policy denies (header x-e2e-deny) is refused with
#     PERMISSION_DENIED naming the rule;
#   - after --cleanup in A, the same plaintext call is refused by B (its app
#     port accepts mTLS only), and A has no meshguard rule left.
#
# The CA: a sidecar in A or B cannot reach the host's 127.0.0.1, so
# meshguard-ca runs inside A, listening on A's veth address 10.250.0.1:15012.
# It runs as root (not the sidecar uid): it only accepts connections, and the
# nat table decides a connection's fate on its first packet, so its replies
# are never redirected. What has to be arranged is the inbound side: A
# intercepts every inbound port ('*'), so 15012 is in A's
# --exclude-inbound-ports, otherwise B's sidecar would land on A's inbound
# listener. The sidecars themselves dial the CA as uid 1337 (excluded).
#
# Needs root with CAP_NET_ADMIN (ip netns add). Without it the test is
# reported SKIPPED (a JUnit <skipped/> in $XML_OUTPUT_FILE) and exits 0.
set -uo pipefail
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:${PATH:-}"

TEST_NAME=transparent_test
PROXY_UID=1337
TD=cluster.local
ID_A="spiffe://$TD/ns/e2e/sa/client"
ID_B="spiffe://$TD/ns/e2e/sa/server"
ADDR_A=10.250.0.1
ADDR_B=10.250.0.2
APP_PORT=8080
CA_PORT=15012
TAG="$$"
NS_A="mg-e2e-a-$TAG"
NS_B="mg-e2e-b-$TAG"
VETH_A="mgva$TAG"
VETH_B="mgvb$TAG"

# ---- results (JUnit XML for scripts/count_results.py) ------------------------
# shellcheck source=tests/e2e/junit.sh
source "${TEST_SRCDIR:-$(dirname "$0")/../..}/meshguard/tests/e2e/junit.sh" 2>/dev/null ||
  source "$(dirname "$0")/junit.sh"
skip_all() {
  echo "SKIPPED: $TEST_NAME: $1" >&2
  CASES=()
  record skip "$TEST_NAME" "$1"
  write_xml
  exit 0
}

# ---- cleanup, on every exit ----------------------------------------------------
PIDS=()
WORK=""
NETNS_MADE=()
cleanup() {
  local rc=$?
  set +e
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  # Anything else still inside our namespaces was started by this test.
  for ns in "${NETNS_MADE[@]}"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    if [ "$FAILED" = 1 ] || [ "$rc" != 0 ]; then
      # Keep the logs where Bazel keeps them.
      local out="${TEST_UNDECLARED_OUTPUTS_DIR:-}"
      if [ -n "$out" ]; then cp "$WORK"/*.log "$WORK"/*.pcap "$out"/ 2>/dev/null; fi
      for f in "$WORK"/*.log; do
        [ -f "$f" ] || continue
        echo "----- $(basename "$f") (last 40 lines)" >&2
        tail -n 40 "$f" >&2
      done
    fi
    rm -rf "$WORK"
  fi
  if [ "$rc" != 0 ] && [ "$FAILED" = 0 ]; then
    fail "script" "exited with status $rc before finishing"
  fi
  if [ "${#CASES[@]}" -gt 0 ]; then write_xml; fi
  [ "$FAILED" = 1 ] && exit 1
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- prerequisites: anything missing = SKIPPED, with the reason ----------------
[ "$(id -u)" = 0 ] || skip_all "needs root (CAP_NET_ADMIN) to create network namespaces; running as uid $(id -u)"
for tool in ip iptables iptables-save setpriv curl python3; do
  command -v "$tool" >/dev/null 2>&1 ||
    skip_all "$tool not found (scripts/setup.sh installs iproute2, iptables, util-linux, curl, python3)"
done
if ! err=$(ip netns add "$NS_A" 2>&1); then
  skip_all "cannot create a network namespace (no CAP_NET_ADMIN?): ip netns add: $err"
fi
NETNS_MADE+=("$NS_A")
ip netns add "$NS_B" || { fail setup "ip netns add $NS_B"; exit 1; }
NETNS_MADE+=("$NS_B")
if ! err=$(ip netns exec "$NS_A" iptables -w -t nat -S 2>&1); then
  skip_all "iptables cannot use the nat table in a network namespace: $err"
fi

RUNFILES="${TEST_SRCDIR:-$PWD/..}/meshguard"
runfile() {
  local p="$RUNFILES/$1"
  [ -e "$p" ] || { fail setup "runfile $1 not found under $RUNFILES"; exit 1; }
  printf '%s' "$p"
}

# The sidecar runs as uid 1337, which cannot read the Bazel output base under
# /root: a world-readable work dir with copies of what it needs.
WORK=$(mktemp -d /tmp/mg-e2e.XXXXXX) || { fail setup "mktemp"; exit 1; }
chmod 755 "$WORK"
mkdir -p "$WORK/bin"
for b in sidecar/meshguard-sidecar identity/ca/meshguard-ca cli/meshguardctl \
         tests/testing/echo_server tests/testing/echo_client; do
  cp -L "$(runfile "$b")" "$WORK/bin/" || { fail setup "copy $b"; exit 1; }
done
IPT_SCRIPT="$WORK/bin/meshguard-iptables.sh"
cp -L "$(runfile deploy/iptables/meshguard-iptables.sh)" "$IPT_SCRIPT"
chmod 755 "$WORK/bin"/*
BIN="$WORK/bin"

in_a() { ip netns exec "$NS_A" "$@"; }
in_b() { ip netns exec "$NS_B" "$@"; }
as_proxy() { setpriv --reuid="$PROXY_UID" --regid="$PROXY_UID" --clear-groups "$@"; }
# start NAME NS CMD...: background process in namespace NS, log in $WORK/NAME.log
start() {
  local name=$1 ns=$2; shift 2
  ip netns exec "$ns" "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
}
wait_http_ok() {  # NS URL WHAT
  local i
  for i in $(seq 1 150); do
    ip netns exec "$1" curl -fsS -o /dev/null --max-time 1 "$2" 2>/dev/null && return 0
    sleep 0.2
  done
  return 1
}
require() {  # NAME CMD...: a setup step that must work
  local name=$1; shift
  if "$@"; then return 0; fi
  fail "$name" "setup step failed: $*"
  exit 1
}

# ---- the pods ----------------------------------------------------------------
require "veth pair" ip link add "$VETH_A" netns "$NS_A" type veth peer name "$VETH_B" netns "$NS_B"
require "A: addresses" in_a ip addr add "$ADDR_A/24" dev "$VETH_A"
require "B: addresses" in_b ip addr add "$ADDR_B/24" dev "$VETH_B"
for ns in "$NS_A" "$NS_B"; do
  require "links up" ip -n "$ns" link set lo up
done
require "A: veth up" in_a ip link set "$VETH_A" up
require "B: veth up" in_b ip link set "$VETH_B" up

# ---- the CA, in A --------------------------------------------------------------
require "CA init" in_a "$BIN/meshguard-ca" init --data-dir "$WORK/ca" --trust-domain "$TD" \
  >"$WORK/ca-init.log" 2>&1
start ca "$NS_A" "$BIN/meshguard-ca" serve --data-dir "$WORK/ca" \
  --listen "$ADDR_A:$CA_PORT" --admin-listen "127.0.0.1:15014"
wait_http_ok "$NS_A" "http://127.0.0.1:15014/readyz" || { fail "CA ready" "meshguard-ca did not become ready"; exit 1; }
cp "$WORK/ca/bundle.pem" "$WORK/bundle.pem" && chmod 644 "$WORK/bundle.pem"
ctl() { in_a "$BIN/meshguardctl" --ca "$ADDR_A:$CA_PORT" --ca-bundle "$WORK/bundle.pem" \
          --admin-socket "$WORK/ca/admin.sock" "$@"; }
TOKEN_A=$(ctl token create --spiffe-id "$ID_A" --ttl 10m 2>>"$WORK/ctl.log") ||
  { fail "join token A" "meshguardctl token create failed"; exit 1; }
TOKEN_B=$(ctl token create --spiffe-id "$ID_B" --ttl 10m 2>>"$WORK/ctl.log") ||
  { fail "join token B" "meshguardctl token create failed"; exit 1; }

# ---- iptables, as the init step would --------------------------------------------
# A: every inbound port intercepted except the CA's; B: the app's port.
if in_a "$IPT_SCRIPT" --proxy-uid "$PROXY_UID" --inbound-ports '*' \
     --exclude-inbound-ports "$CA_PORT" >"$WORK/iptables-a.log" 2>&1 &&
   in_b "$IPT_SCRIPT" --proxy-uid "$PROXY_UID" --inbound-ports "$APP_PORT" \
     >"$WORK/iptables-b.log" 2>&1; then
  pass "iptables rules installed in both pods"
else
  fail "iptables rules installed in both pods" "$(cat "$WORK"/iptables-*.log)"
  exit 1
fi
in_b iptables-save -t nat >"$WORK/iptables-save-b.log" 2>&1

# ---- the apps and the sidecars -----------------------------------------------------
cat >"$WORK/policy-b.yaml" <<YAML
default_action: DENY
rules:
  - name: deny-flagged-calls
    action: DENY
    to: {methods: ["/meshguard.testing.Echo/*"]}
    when:
      - header: x-e2e-deny
  - name: client-may-echo
    action: ALLOW
    from: {principals: ["$ID_A"]}
    to: {methods: ["/meshguard.testing.Echo/Echo"]}
YAML
chmod 644 "$WORK/policy-b.yaml"

# B's app listens on every address: only the redirect keeps plaintext away.
start echo-server-b "$NS_B" "$BIN/echo_server" --listen "0.0.0.0:$APP_PORT"
start sidecar-a "$NS_A" setpriv --reuid="$PROXY_UID" --regid="$PROXY_UID" --clear-groups \
  "$BIN/meshguard-sidecar" --ca "$ADDR_A:$CA_PORT" --ca-bundle "$WORK/bundle.pem" \
  --join-token "$TOKEN_A" --transparent --workers 1 --access-log stdout
start sidecar-b "$NS_B" setpriv --reuid="$PROXY_UID" --regid="$PROXY_UID" --clear-groups \
  "$BIN/meshguard-sidecar" --ca "$ADDR_A:$CA_PORT" --ca-bundle "$WORK/bundle.pem" \
  --join-token "$TOKEN_B" --app "127.0.0.1:$APP_PORT" --policy "$WORK/policy-b.yaml" \
  --workers 1 --access-log stdout
if wait_http_ok "$NS_A" http://127.0.0.1:15000/readyz &&
   wait_http_ok "$NS_B" http://127.0.0.1:15000/readyz; then
  pass "both sidecars (uid $PROXY_UID) got certificates from the CA in A and are ready"
else
  fail "both sidecars ready" "a sidecar did not become ready (see sidecar-*.log)"
  exit 1
fi
for _ in $(seq 1 50); do grep -q "listening on" "$WORK/echo-server-b.log" && break; sleep 0.1; done

# ---- capture on B's veth ------------------------------------------------------------
CAPTURE=0
if command -v tcpdump >/dev/null 2>&1; then
  start tcpdump-b "$NS_B" tcpdump -Z root -i "$VETH_B" -n --immediate-mode -U -s 0 -w "$WORK/b-8080.pcap" "tcp port $APP_PORT"
  TCPDUMP_PID=${PIDS[-1]}
  for _ in $(seq 1 50); do grep -q "listening on" "$WORK/tcpdump-b.log" && break; sleep 0.1; done
  grep -q "listening on" "$WORK/tcpdump-b.log" && CAPTURE=1
fi

# ---- the call: the app in A dials B's address and app port, plain h2c ------------------
out=$(in_a "$BIN/echo_client" --target "$ADDR_B:$APP_PORT" --timeout_ms 10000 2>&1)
rc=$?
echo "echo_client: $out"
if [ $rc = 0 ] && [[ $out == OK* ]]; then
  pass "A's app calls $ADDR_B:$APP_PORT directly and the call succeeds"
else
  fail "A's app calls $ADDR_B:$APP_PORT directly and the call succeeds" "rc=$rc: $out"
fi
if [[ $out == *"URI=$ID_A"* ]]; then
  pass "B's app sees A's SPIFFE ID in x-forwarded-client-cert"
else
  fail "B's app sees A's SPIFFE ID in x-forwarded-client-cert" "got: $out"
fi
if [[ $out == *"By=$ID_B"* ]]; then
  pass "x-forwarded-client-cert was set by B's sidecar (By=$ID_B)"
else
  fail "x-forwarded-client-cert was set by B's sidecar (By=$ID_B)" "got: $out"
fi

# ---- the denied call ---------------------------------------------------------------------
out=$(in_a "$BIN/echo_client" --target "$ADDR_B:$APP_PORT" --header x-e2e-deny=1 --timeout_ms 10000 2>&1)
rc=$?
echo "echo_client (denied): $out"
if [ $rc != 0 ] && [[ $out == "ERROR 7 "* ]] && [[ $out == *deny-flagged-calls* ]]; then
  pass "a call B's policy denies is refused with PERMISSION_DENIED naming the rule"
else
  fail "a call B's policy denies is refused with PERMISSION_DENIED naming the rule" "rc=$rc: $out"
fi

# ---- what was on the wire --------------------------------------------------------------
if [ "$CAPTURE" = 1 ]; then
  # --immediate-mode and -U hand each packet to the file at once; still,
  # give it a moment: on SIGINT tcpdump drops what it has not read yet.
  sleep 1
  kill -INT "$TCPDUMP_PID" 2>/dev/null
  for _ in $(seq 1 30); do kill -0 "$TCPDUMP_PID" 2>/dev/null || break; sleep 0.1; done
  verdict=$(python3 - "$WORK/b-8080.pcap" "$APP_PORT" <<'PY'
import struct, sys
path, port = sys.argv[1], int(sys.argv[2])
data = open(path, "rb").read()
magic = struct.unpack("<I", data[:4])[0]
endian = "<" if magic in (0xa1b2c3d4, 0xa1b23c4d) else ">"
linktype = struct.unpack(endian + "I", data[20:24])[0]
off, to_server, from_server, segments = 24, {}, b"", 0
while off + 16 <= len(data):
    _, _, incl, _ = struct.unpack(endian + "IIII", data[off:off + 16])
    pkt = data[off + 16:off + 16 + incl]
    off += 16 + incl
    if linktype == 1:            # Ethernet
        if len(pkt) < 14 or pkt[12:14] != b"\x08\x00": continue
        ip = pkt[14:]
    elif linktype == 113:        # Linux cooked
        ip = pkt[16:]
    else:
        ip = pkt
    if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6: continue
    ihl = (ip[0] & 15) * 4
    tcp = ip[ihl:]
    sport, dport = struct.unpack(">HH", tcp[:4])
    payload = tcp[(tcp[12] >> 4) * 4:]
    if not payload: continue
    segments += 1
    if dport == port:
        to_server.setdefault(sport, b"")
        to_server[sport] += payload
    else:
        from_server += payload
if segments == 0:
    print("FAIL no payload on port %d was captured" % port); sys.exit()
everything = b"".join(to_server.values()) + from_server
if b"PRI * HTTP/2.0" in everything:
    print("FAIL the plaintext HTTP/2 preface was on the wire"); sys.exit()
if b"meshguard.testing.Echo" in everything:
    print("FAIL the method name was on the wire in plaintext"); sys.exit()
firsts = [s[:3].hex() for s in to_server.values()]
if not firsts or not all(f.startswith("1603") for f in firsts):
    print("FAIL a connection to port %d did not start with a TLS handshake record: %s" % (port, firsts)); sys.exit()
print("OK %d segments, %d connection(s), each opened with a TLS handshake record (%s)" % (segments, len(firsts), ", ".join(firsts)))
PY
)
  echo "capture: $verdict"
  if [[ $verdict == OK* ]]; then
    pass "bytes on B's veth for port $APP_PORT were TLS (handshake 0x16 0x03, no HTTP/2 preface)"
  else
    fail "bytes on B's veth for port $APP_PORT were TLS (handshake 0x16 0x03, no HTTP/2 preface)" "$verdict"
  fi
else
  record skip "bytes on B's veth were TLS (capture)" "tcpdump not installed or could not capture"
  echo "SKIP: capture (tcpdump not available); the metrics check below still runs" >&2
fi

# ---- B's metrics: the inbound call with the peer's principal (only over mTLS) ---------------
metrics=$(in_b curl -fsS --max-time 5 http://127.0.0.1:15000/metrics 2>&1)
echo "$metrics" >"$WORK/metrics-b.log"
allowed=$(echo "$metrics" | grep '^meshguard_requests_total{' | grep 'direction="inbound"' |
          grep "source_principal=\"$ID_A\"" | grep 'decision="allow"' | head -1)
denied=$(echo "$metrics" | grep '^meshguard_authz_decisions_total{' | grep 'rule="deny-flagged-calls"' | head -1)
if [ -n "$allowed" ] && [ -n "$denied" ]; then
  pass "B's metrics count A's calls with A's principal (allowed and denied)"
else
  fail "B's metrics count A's calls with A's principal (allowed and denied)" \
    "allowed line: '${allowed}'; denied line: '${denied}'"
fi

# ---- without A's rules, B's app port takes mTLS only ------------------------------------
if in_a "$IPT_SCRIPT" --cleanup >>"$WORK/iptables-a.log" 2>&1 &&
   ! in_a iptables-save -t nat | grep -q MESHGUARD; then
  pass "--cleanup in A removes every meshguard chain and jump"
else
  fail "--cleanup in A removes every meshguard chain and jump" "$(in_a iptables-save -t nat 2>&1)"
fi
out=$(in_a "$BIN/echo_client" --target "$ADDR_B:$APP_PORT" --timeout_ms 3000 2>&1)
rc=$?
echo "echo_client (no interception in A): $out"
if [ $rc != 0 ] && [[ $out == ERROR* ]]; then
  pass "a plaintext call from outside the mesh to B's app port is refused"
else
  fail "a plaintext call from outside the mesh to B's app port is refused" "rc=$rc: $out"
fi

echo
echo "B's nat table:"
cat "$WORK/iptables-save-b.log"
[ "$FAILED" = 0 ] && echo "$TEST_NAME: all checks passed"
exit "$FAILED"
