#!/usr/bin/env bash
# MESH_IN_*, MESH_ADMIN_* and MESH_PID_* are set by mesh.sh (printf -v, eval).
# shellcheck disable=SC2154
# The sidecar's inbound (mTLS) listener, probed from outside with
# `openssl s_client`, as a peer or an attacker on the network would see it
# (issue 7). One real meshguard-ca, one real meshguard-sidecar in front of
# echo_server, all on free loopback ports. Each probe is one JUnit case:
#   - a good client certificate (from the CA, with a join token): TLS 1.3,
#     ALPN h2, no compression, the server's certificate verifies against the
#     CA bundle and carries the sidecar's SPIFFE ID, and a gRPC call sent as
#     raw HTTP/2 over the session reaches the app with the caller's identity;
#   - no client certificate, a certificate from an unrelated CA (same trust
#     domain, same SPIFFE ID), an expired one and a revoked one: each refused
#     by the server with a TLS alert, the call never reaches the app
#     (meshguard_requests_total does not move, nothing comes back);
#   - TLS 1.2, 1.1, 1.0 and "anything but 1.3": refused with protocol_version;
#   - ALPN without h2: refused; renegotiation: impossible (TLS 1.3 only);
#   - the TLS 1.3 cipher suites the listener accepts.
# In TLS 1.3 the server checks the client certificate after the client has
# sent its Finished, so s_client prints "New, TLSv1.3" before the server's
# refusal arrives as an alert: refusals are asserted on that alert and on the
# call not getting through, not on s_client's handshake summary.
# Findings and the listener's TLS configuration: docs/security.md. The
# testssl.sh scan of the same listener is tests/tls/testssl_scan.sh (by hand:
# it takes 4-10 minutes here).
set -uo pipefail
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:${PATH:-}"

# shellcheck disable=SC2034  # read by junit.sh
TEST_NAME=inbound_tls_test
JUNIT_CLASS_PREFIX=tls

R="${TEST_SRCDIR:?run with bazel test}/${TEST_WORKSPACE:-meshguard}"
# shellcheck source=../e2e/junit.sh
source "$R/tests/e2e/junit.sh"
# shellcheck source=../../scripts/lib/mesh.sh
source "$R/scripts/lib/mesh.sh"
# shellcheck source=tls_fixture.sh
source "$R/tests/tls/tls_fixture.sh"
MESH_CA="$R/identity/ca/meshguard-ca"
MESH_CTL="$R/cli/meshguardctl"
MESH_SIDECAR="$R/sidecar/meshguard-sidecar"
ECHO_SERVER="$R/tests/testing/echo_server"
SERVER_ID=$TLS_SERVER_ID
CLIENT_ID=$TLS_CLIENT_ID

WORK=$(mktemp -d /tmp/meshguard-tls.XXXXXX) || exit 1
MESH_WORK=$WORK
cleanup() {
  local rc=$?
  set +e
  mesh_stop
  if [ "$FAILED" = 1 ] || [ "$rc" != 0 ]; then
    if [ -n "${TEST_UNDECLARED_OUTPUTS_DIR:-}" ]; then
      cp "$WORK"/*.log "$WORK"/*.txt "$TEST_UNDECLARED_OUTPUTS_DIR"/ 2>/dev/null
    fi
    for f in "$WORK"/*.log; do
      [ -f "$f" ] || continue
      echo "----- $(basename "$f") (last 20 lines)" >&2
      tail -n 20 "$f" >&2
    done
  fi
  rm -rf "$WORK"
  if [ "$rc" != 0 ] && [ "$FAILED" = 0 ]; then
    fail "script" "exited with status $rc before finishing"
  fi
  write_xml
  [ "$FAILED" = 1 ] && exit 1
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# setup NAME CMD...: a step every probe depends on; stops the test if it fails.
setup() {
  local name=$1
  shift
  if "$@"; then return 0; fi
  fail "setup: $name" "failed: $*"
  exit 1
}

for tool in openssl curl timeout python3; do
  command -v "$tool" >/dev/null ||
    { fail "setup: tools" "$tool not found (scripts/setup.sh installs it)"; exit 1; }
done

setup "free ports" tls_pick_ports
INBOUND=$TLS_INBOUND
ADMIN_PORT=$TLS_ADMIN_PORT
echo "port base $MESH_PORT_BASE, inbound listener $INBOUND"

setup "meshguard-ca ready" tls_start_ca ca "$WORK/ca" "$MESH_CA_PORT" "$MESH_CA_HTTP_PORT"
BUNDLE="$WORK/ca/bundle.pem"
setup "client certificate from the CA" tls_issue mesh_ctl "$WORK/good" "$CLIENT_ID"
# A second, unrelated CA: same trust domain and SPIFFE ID, other root. Only
# needed long enough to issue one certificate.
ctl_other() {
  "$MESH_CTL" --ca "127.0.0.1:$MESH_IN_orders" --ca-bundle "$WORK/other-ca/bundle.pem" \
    --admin-socket "$WORK/other-ca/admin.sock" "$@"
}
setup "unrelated CA ready" tls_start_ca other_ca "$WORK/other-ca" "$MESH_IN_orders" "$MESH_ADMIN_orders"
setup "client certificate from the unrelated CA" tls_issue ctl_other "$WORK/other" "$CLIENT_ID"
mesh_term_and_wait "$MESH_PID_other_ca"

setup "echo_server and meshguard-sidecar ready" tls_start_sidecar
echo "sidecar $SERVER_ID on $INBOUND, echo_server on 127.0.0.1:$TLS_APP_PORT"
pass "setup: meshguard-ca, meshguard-sidecar and echo_server running"

# ---- probing ----------------------------------------------------------------------
# One gRPC call (/meshguard.testing.Echo/Echo, payload MARKER) as raw
# HTTP/2: the connection preface, an empty SETTINGS, HEADERS (HPACK: static
# table entries and literals without indexing, no Huffman) and DATA with
# END_STREAM. The echo service
# returns the payload and the x-forwarded-client-cert it received, both
# verbatim in its response, so they show in s_client's output.
byte() { printf '%b' "\\x$(printf %02x "$1")"; }
u24() { byte $(($1 >> 16 & 255)); byte $(($1 >> 8 & 255)); byte $(($1 & 255)); }
frame() { u24 "$1"; byte "$2"; byte "$3"; byte 0; byte 0; byte 0; byte "$4"; }  # LEN TYPE FLAGS STREAM
hstr() { byte ${#1}; printf '%s' "$1"; }  # a string literal shorter than 127 bytes
h2_echo_call() {
  local marker=$1 path=/meshguard.testing.Echo/Echo authority=echo ct=application/grpc
  local headers=$((2 + 2 + ${#path} + 2 + ${#authority} + 3 + ${#ct} + 2 + 2 + 1 + 8))
  local message=$((2 + ${#marker}))
  printf 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'
  frame 0 4 0 0
  frame "$headers" 1 4 1
  byte 0x83                          # :method POST (static index 3)
  byte 0x87                          # :scheme https (static index 7)
  byte 0x04; hstr "$path"            # :path, literal value, name index 4
  byte 0x01; hstr "$authority"       # :authority, name index 1
  byte 0x0f; byte 0x10; hstr "$ct"   # content-type, name index 31
  byte 0x00; hstr te; hstr trailers
  frame $((5 + message)) 0 1 1       # DATA, END_STREAM
  byte 0; u24 0; byte "$message"     # gRPC: not compressed, 4-byte length
  byte 0x0a; hstr "$marker"          # EchoRequest.payload
}

# inbound_calls: calls the sidecar has let through to the app so far.
inbound_calls() {
  mesh_http_ok "$ADMIN_PORT" /metrics |
    awk '/^meshguard_requests_total\{direction="inbound"/ {n += $NF} END {print n + 0}'
}

# call OUT MARKER S_CLIENT_ARGS...: connects to the inbound listener, sends
# the echo call once the handshake is done and keeps stdin open until the
# answer (MARKER) or an error shows in OUT, or 5 s. s_client's rc is in
# CALL_RC.
# The writer reads OUT while s_client writes it, on purpose.
# shellcheck disable=SC2094
call() {
  local out=$1 marker=$2
  shift 2
  {
    h2_echo_call "$marker"
    for _ in $(seq 1 50); do
      grep -aq -e "$marker" -e ':error:' "$out" 2>/dev/null && break
      sleep 0.1
    done
  } | timeout 20 openssl s_client -connect "$INBOUND" -CAfile "$BUNDLE" -verify_return_error \
    -nocommands "$@" >"$out" 2>&1
  CALL_RC=${PIPESTATUS[1]}
}

with_cert() { echo -cert "$1/leaf.pem" -cert_chain "$1/chain.pem" -key "$1/key.pem"; }

# refused NAME OUT ALERT_NUMBER ALERT_TEXT CALLS_BEFORE MARKER
refused() {
  local name="$1: refused with alert $4 ($3), no call reaches the app"
  local out=$2 number=$3 text=$4 before=$5 marker=$6 after why=()
  after=$(inbound_calls)
  grep -aq "SSL alert number $number\$" "$out" || why+=("no alert $number ($text) from the server")
  if grep -aq -e "$marker" -e 'URI=spiffe' "$out"; then why+=("the call's answer came back"); fi
  [ "$after" = "$before" ] || why+=("the sidecar let $((after - before)) call(s) through to the app")
  [ "$CALL_RC" != 0 ] || why+=("s_client exited 0")
  if [ ${#why[@]} = 0 ]; then
    pass "$name"
  else
    fail "$name" "$(IFS=';'; echo "${why[*]}") -- s_client (exit $CALL_RC): $(grep -a -m2 -e ':error:' -e '^New,' "$out" | tr '\n' ' ')"
    # The whole exchange, for a failure that shows no alert at all.
    grep -av -e '^ *[0-9a-f]\{4\} - ' -e '^-----' -e '^[A-Za-z0-9+/=]\{64\}$' "$out" | tail -25 | sed 's/^/    | /'
  fi
}

# ---- a good client certificate ------------------------------------------------------
before=$(inbound_calls)
marker="tls-probe-good-$RANDOM$RANDOM"
# shellcheck disable=SC2046
call "$WORK/good.txt" "$marker" -alpn h2 -showcerts $(with_cert "$WORK/good")
good=$WORK/good.txt
c="good client certificate: handshake completes with TLS 1.3 and ALPN h2"
if grep -aq '^New, TLSv1\.3, Cipher is TLS_' "$good" && grep -aq '^ALPN protocol: h2$' "$good"; then
  sed -n 's/^New, /negotiated: /p' "$good" | head -1
  pass "$c"
else
  fail "$c" \
    "$(grep -a -e '^New,' -e '^ALPN' -e ':error:' -e '^No ALPN' "$good" | tr '\n' ' ')"
fi

awk '/-BEGIN CERTIFICATE-/ {n++} n == 1 {print} /-END CERTIFICATE-/ && n == 1 {exit}' "$good" \
  >"$WORK/server-leaf.pem"
sans=$(openssl x509 -in "$WORK/server-leaf.pem" -noout -ext subjectAltName 2>&1 | sed 1d | tr -d ' ')
server_serial=$(openssl x509 -in "$WORK/server-leaf.pem" -noout -serial 2>/dev/null | sed 's/^serial=//')
certs_serial=$(mesh_http_ok "$ADMIN_PORT" /certs |
  python3 -c 'import json,sys; print(json.load(sys.stdin).get("serial", ""))' 2>/dev/null)
norm() { tr 'A-F' 'a-f' <<<"$1" | sed 's/^0*//'; }
c="good client certificate: the server's certificate verifies against the CA bundle, its only SAN is $SERVER_ID, its serial is the sidecar's current one"
if grep -aq '^Verify return code: 0 (ok)$' "$good" && [ "$sans" = "URI:$SERVER_ID" ] &&
   [ -n "$server_serial" ] && [ "$(norm "$server_serial")" = "$(norm "$certs_serial")" ]; then
  echo "server certificate serial $certs_serial (the sidecar's /certs)"
  pass "$c"
else
  fail "$c" \
    "$(grep -a '^Verify return code' "$good"); SANs '$sans'; serial '$server_serial' vs /certs '$certs_serial'"
fi

c="good client certificate: the call reaches the app, which sees x-forwarded-client-cert URI=$CLIENT_ID"
if grep -aq "$marker" "$good" && grep -aq "URI=$CLIENT_ID" "$good" && [ "$(inbound_calls)" = $((before + 1)) ]; then
  pass "$c"
else
  fail "$c" \
    "marker or URI=$CLIENT_ID not in the answer, or inbound calls $before -> $(inbound_calls); s_client rc $CALL_RC"
fi

c="no compression: Compression: NONE, Expansion: NONE"
if grep -aq '^Compression: NONE$' "$good" && grep -aq '^Expansion: NONE$' "$good"; then
  pass "$c"
else
  fail "$c" "$(grep -a -e '^Compression' -e '^Expansion' "$good" | tr '\n' ' ')"
fi

# ---- client certificates the listener must refuse ---------------------------------
before=$(inbound_calls)
marker="tls-probe-nocert-$RANDOM$RANDOM"
call "$WORK/no-cert.txt" "$marker" -alpn h2
refused "no client certificate" "$WORK/no-cert.txt" 116 certificate_required "$before" "$marker"

before=$(inbound_calls)
marker="tls-probe-other-ca-$RANDOM$RANDOM"
# shellcheck disable=SC2046
call "$WORK/other-ca.txt" "$marker" -alpn h2 $(with_cert "$WORK/other")
refused "client certificate from an unrelated CA (same trust domain and SPIFFE ID)" \
  "$WORK/other-ca.txt" 42 bad_certificate "$before" "$marker"

# Expired: a 2-second certificate, used 3 seconds later.
c="expired client certificate: refused with alert bad_certificate (42), no call reaches the app"
if tls_issue mesh_ctl "$WORK/expired" "$CLIENT_ID" --ttl 2s; then
  sleep 3
  verdict=$("$MESH_CTL" verify --bundle "$BUNDLE" --chain "$WORK/expired/cert.pem" 2>&1)
  before=$(inbound_calls)
  marker="tls-probe-expired-$RANDOM$RANDOM"
  # shellcheck disable=SC2046
  call "$WORK/expired.txt" "$marker" -alpn h2 $(with_cert "$WORK/expired")
  if [[ "$verdict" == *"certificate has expired"* ]]; then
    refused "expired client certificate" "$WORK/expired.txt" 42 bad_certificate "$before" "$marker"
  else
    fail "$c" "the probe's certificate is not (only) expired: meshguardctl verify: $verdict"
  fi
else
  fail "$c" "meshguardctl cert request --ttl 2s failed: $(tail -2 "$WORK/ctl.log")"
fi

# Revoked: accepted before the revocation, refused once the sidecar has the
# new CRL (the CA pushes the bundle to every WatchTrustBundle stream).
c="revoked client certificate (accepted before meshguardctl revoke): refused with alert bad_certificate (42), no call reaches the app"
if tls_issue mesh_ctl "$WORK/revoked" "$CLIENT_ID"; then
  serial=$(sed -n 's/^serial: //p' "$WORK/revoked.issue.txt")
  marker="tls-probe-revoked-$RANDOM$RANDOM"
  # shellcheck disable=SC2046
  call "$WORK/revoked-before.txt" "$marker" -alpn h2 $(with_cert "$WORK/revoked")
  if ! grep -aq "$marker" "$WORK/revoked-before.txt"; then
    fail "$c" "the certificate was not accepted before its revocation"
  elif ! mesh_ctl revoke --serial "$serial" --reason tls-probe >>"$WORK/ctl.log" 2>&1; then
    fail "$c" "meshguardctl revoke --serial $serial failed"
  else
    for _ in $(seq 1 20); do
      before=$(inbound_calls)
      marker="tls-probe-revoked-$RANDOM$RANDOM"
      # shellcheck disable=SC2046
      call "$WORK/revoked.txt" "$marker" -alpn h2 $(with_cert "$WORK/revoked")
      # Try again while the call is still accepted (the CRL has not reached
      # the sidecar yet) or was closed with no alert (its handshake was under
      # way when the CRL arrived: the sidecar then checks the peer again
      # once the handshake is done and closes the connection, too late for
      # an alert).
      if ! grep -aq "$marker" "$WORK/revoked.txt" &&
        grep -aq 'SSL alert number' "$WORK/revoked.txt"; then
        break
      fi
      sleep 0.5
    done
    refused "revoked client certificate (accepted before meshguardctl revoke)" \
      "$WORK/revoked.txt" 42 bad_certificate "$before" "$marker"
  fi
else
  fail "$c" "meshguardctl cert request failed: $(tail -2 "$WORK/ctl.log")"
fi

# ---- protocol versions ----------------------------------------------------------------
# A good certificate each time, so that the version is the only reason.
# OpenSSL 3 sends TLS 1.0/1.1 only at security level 0: without it the
# probe would fail in the client and prove nothing about the server.
for v in tls1_2 tls1_1 tls1 no_tls1_3; do
  case $v in
    tls1_2) what="TLS 1.2" ;;
    tls1_1) what="TLS 1.1" ;;
    tls1) what="TLS 1.0" ;;
    no_tls1_3) what="a client offering everything up to TLS 1.2 (-no_tls1_3)" ;;
  esac
  before=$(inbound_calls)
  marker="tls-probe-$v-$RANDOM$RANDOM"
  # shellcheck disable=SC2046
  call "$WORK/$v.txt" "$marker" "-$v" -cipher 'DEFAULT:@SECLEVEL=0' -alpn h2 $(with_cert "$WORK/good")
  refused "$what" "$WORK/$v.txt" 70 protocol_version "$before" "$marker"
done

# ---- ALPN ---------------------------------------------------------------------------------
before=$(inbound_calls)
marker="tls-probe-alpn-$RANDOM$RANDOM"
# shellcheck disable=SC2046
call "$WORK/alpn-http11.txt" "$marker" -alpn http/1.1 $(with_cert "$WORK/good")
refused "ALPN offering http/1.1 only" "$WORK/alpn-http11.txt" 120 no_application_protocol "$before" "$marker"
alpn_failures=$(mesh_http_ok "$ADMIN_PORT" /metrics |
  awk '/^meshguard_tls_handshake_failures_total\{side="inbound",reason="alpn_mismatch"\}/ {n += $NF} END {print n + 0}')
c="the ALPN refusal is counted as reason=\"alpn_mismatch\""
if [ "$alpn_failures" -eq 1 ]; then
  pass "$c"
else
  fail "$c" "meshguard_tls_handshake_failures_total{side=\"inbound\",reason=\"alpn_mismatch\"} is $alpn_failures, want 1"
fi

# ---- renegotiation ----------------------------------------------------------------------
# Offering every version, then asking for a renegotiation (s_client's R
# command) on the session: possible only if the server had settled for
# TLS 1.2 or lower; TLS 1.3 has no renegotiation at all.
# shellcheck disable=SC2046
{ sleep 1; echo R; sleep 1; } | timeout 20 openssl s_client -connect "$INBOUND" -CAfile "$BUNDLE" \
  -verify_return_error -alpn h2 $(with_cert "$WORK/good") >"$WORK/renegotiate.txt" 2>&1
c="renegotiation: not possible (the session is TLS 1.3; s_client's R is refused: wrong ssl version)"
if grep -aq '^New, TLSv1\.3,' "$WORK/renegotiate.txt" &&
   grep -aq 'RENEGOTIATING' "$WORK/renegotiate.txt" &&
   grep -aq 'can_renegotiate:wrong ssl version' "$WORK/renegotiate.txt"; then
  pass "$c"
else
  fail "$c" \
    "$(grep -a -e '^New,' -e RENEGOTIAT -e ':error:' "$WORK/renegotiate.txt" | tr '\n' ' ')"
fi

# ---- TLS 1.3 cipher suites ---------------------------------------------------------------
# All five TLS 1.3 suites are AEAD; CCM_8 (8-byte tag) is the weakest and must
# not be accepted. What is accepted is recorded in docs/security.md.
expected="TLS_AES_128_GCM_SHA256 TLS_AES_256_GCM_SHA384 TLS_CHACHA20_POLY1305_SHA256"
accepted=()
for suite in TLS_AES_128_GCM_SHA256 TLS_AES_256_GCM_SHA384 TLS_CHACHA20_POLY1305_SHA256 \
             TLS_AES_128_CCM_SHA256 TLS_AES_128_CCM_8_SHA256; do
  # shellcheck disable=SC2046
  timeout 20 openssl s_client -connect "$INBOUND" -CAfile "$BUNDLE" -verify_return_error -alpn h2 \
    -ciphersuites "$suite" $(with_cert "$WORK/good") </dev/null >"$WORK/suite-$suite.txt" 2>&1
  if grep -aq "^New, TLSv1\.3, Cipher is $suite\$" "$WORK/suite-$suite.txt"; then accepted+=("$suite"); fi
done
c="TLS 1.3 cipher suites accepted: exactly $expected (no CCM, no CCM_8)"
if [ "${accepted[*]}" = "$expected" ]; then
  pass "$c"
else
  fail "$c" "accepted '${accepted[*]}', expected '$expected'"
fi

# ---- key exchange groups ----------------------------------------------------------------
# Pinned in code (identity/crypto/tls_context.cc): elliptic curves only. A
# client offering only a finite-field group is refused.
expected="X25519 P-256 P-384"
accepted=()
for group in X25519 P-256 P-384 P-521 X448 ffdhe2048 ffdhe3072; do
  # shellcheck disable=SC2046
  timeout 20 openssl s_client -connect "$INBOUND" -CAfile "$BUNDLE" -verify_return_error -alpn h2 \
    -groups "$group" $(with_cert "$WORK/good") </dev/null >"$WORK/group-$group.txt" 2>&1
  if grep -aq "^New, TLSv1\.3, Cipher is" "$WORK/group-$group.txt"; then accepted+=("$group"); fi
done
c="key exchange groups accepted: exactly $expected (no finite-field groups)"
if [ "${accepted[*]}" = "$expected" ]; then
  pass "$c"
else
  fail "$c" "accepted '${accepted[*]}', expected '$expected'"
fi

# ---- the sidecar's own account ---------------------------------------------------------
failures=$(mesh_http_ok "$ADMIN_PORT" /metrics |
  awk '/^meshguard_tls_handshake_failures_total\{side="inbound"/ {n += $NF} END {print n + 0}')
# no cert, other CA, expired, revoked, 4 versions, ALPN, CCM and CCM_8
c="the sidecar counted every refused handshake (meshguard_tls_handshake_failures_total)"
if [ "$failures" -ge 11 ]; then
  echo "meshguard_tls_handshake_failures_total, inbound: $failures"
  pass "$c"
else
  fail "$c" "meshguard_tls_handshake_failures_total inbound is $failures, want >= 11"
fi

