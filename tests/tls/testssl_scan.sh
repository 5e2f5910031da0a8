#!/usr/bin/env bash
# testssl.sh (Debian's testssl 3.0.8) against a meshguard-sidecar's inbound
# (mTLS) listener, and a verdict from its JSON findings (issue 7). Not in
# `bazel test //...`: the scan takes 4 to 10 minutes on our 2-core machines.
# The s_client probes of the same listener are //tests/tls:inbound_tls_test;
# both are written up in docs/security.md.
#
#   tests/tls/testssl_scan.sh [--out-dir DIR]
#
# Builds meshguard-ca, meshguardctl, meshguard-sidecar and echo_server,
# starts one CA and one sidecar (in front of echo_server) on free loopback
# ports (tests/tls/tls_fixture.sh, the same setup as the test), and runs
#   testssl --quiet --color 0 --warnings batch --nodns none --add-ca BUNDLE
#           --openssl DIR/openssl -p -s -f -S -P -U -e
#           --jsonfile DIR/testssl.json 127.0.0.1:PORT
# (protocols, cipher categories, forward secrecy, server defaults and
# certificate, server preferences, vulnerabilities, every cipher; not the
# client simulations, which take ten more minutes and mean nothing for a
# listener only sidecars talk to). Nothing leaves loopback: no DNS lookups,
# no CRL or OCSP fetches (testssl's --phone-out is off).
#
# testssl 3.0.8 cannot present a client certificate (--mtls came in 3.1).
# The listener asks for one only after it has chosen the protocol version,
# the cipher suite and the key exchange and sent its own certificate, so
# testssl's own socket checks need none. Its openssl-based steps do: without
# a certificate, whether `openssl s_client </dev/null` exits 0 depends on
# whether the listener's certificate_required alert arrives before s_client
# quits, and when it does, testssl 3.0.8 concludes "Your OpenSSL cannot
# connect" and stops. So the scan runs with --openssl pointing at a small
# wrapper (DIR/openssl) that adds a client certificate from the CA (-cert,
# -cert_chain, -key) to every `openssl s_client` and passes everything else
# to the system openssl unchanged: what --mtls does in later testssl
# versions. The refusals without a certificate are the s_client probes' job.
#
# The verdict (exit 0 when every check holds, 1 otherwise):
#   - SSLv2, SSLv3, TLS 1.0, 1.1 and 1.2 not offered; TLS 1.3 offered;
#   - NULL, aNULL, EXPORT, LOW, 3DES/IDEA and AVERAGE (CBC) cipher
#     categories not offered; STRONG (AEAD) offered;
#   - no insecure or client-initiated renegotiation, no TLS compression
#     (CRIME), the chain of trust verifies against the CA's bundle;
#   - no finding of severity HIGH or CRITICAL except the four that the
#     X.509-SVID profile makes by design (see docs/security.md):
#     cert_trust (no DNS name for the address scanned), cert_expirationStatus
#     and cert_notAfter (short-lived certificates), cert_revocation (no CRL
#     distribution point or OCSP URL: the CA's CRL travels in the trust
#     bundle).
#
# Environment: MESHGUARD_BAZEL, the bazel command (default "bazel"), e.g.
# "bazel --output_base=DIR".
set -euo pipefail
cd "$(dirname "$0")/../.."

OUT_DIR=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out-dir) OUT_DIR=$2; shift 2 ;;
    -h|--help) sed -n '2,49p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "testssl_scan: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
done
OUT_DIR=${OUT_DIR:-/tmp/meshguard-testssl-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT_DIR"

for tool in testssl openssl curl python3; do
  command -v "$tool" >/dev/null ||
    { echo "testssl_scan: $tool not found (scripts/setup.sh installs it)" >&2; exit 1; }
done

say() { printf '==> %s\n' "$*"; }

# Word-split on purpose: MESHGUARD_BAZEL may carry startup options.
read -r -a BAZEL <<<"${MESHGUARD_BAZEL:-bazel}"
TARGETS=(//identity/ca:meshguard-ca //cli:meshguardctl //sidecar:meshguard-sidecar
  //tests/testing:echo_server)
say "building ${TARGETS[*]}"
if ! "${BAZEL[@]}" build "${TARGETS[@]}" >"$OUT_DIR/build.log" 2>&1; then
  grep -E '^(ERROR|FAILED)' "$OUT_DIR/build.log" | head -20 >&2
  echo "testssl_scan: the build failed; the full log is in $OUT_DIR/build.log" >&2
  exit 1
fi
BIN=$("${BAZEL[@]}" info bazel-bin 2>/dev/null)

# shellcheck source=../../scripts/lib/mesh.sh
source scripts/lib/mesh.sh
# shellcheck source=tls_fixture.sh
source tests/tls/tls_fixture.sh
MESH_CA="$BIN/identity/ca/meshguard-ca"
MESH_CTL="$BIN/cli/meshguardctl"
MESH_SIDECAR="$BIN/sidecar/meshguard-sidecar"
ECHO_SERVER="$BIN/tests/testing/echo_server"

# /tmp: the CA's admin socket path must fit sun_path.
MESH_WORK=$(mktemp -d /tmp/meshguard-testssl.XXXXXX)
cleanup() {
  mesh_stop
  cp "$MESH_WORK"/*.log "$OUT_DIR"/ 2>/dev/null || true
  rm -rf "$MESH_WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

tls_pick_ports
tls_start_ca ca "$MESH_WORK/ca" "$MESH_CA_PORT" "$MESH_CA_HTTP_PORT"
tls_start_sidecar
cp "$MESH_WORK/ca/bundle.pem" "$OUT_DIR/bundle.pem"
say "meshguard-sidecar ($TLS_SERVER_ID) listens on $TLS_INBOUND (mTLS)"

# The client certificate testssl's openssl presents (see the top).
tls_issue mesh_ctl "$OUT_DIR/client" "$TLS_CLIENT_ID"
OPENSSL_BIN=$(command -v openssl)
cat >"$OUT_DIR/openssl" <<WRAPPER
#!/bin/sh
# $OPENSSL_BIN, with a client certificate for $TLS_CLIENT_ID on every s_client.
if [ "\$1" = s_client ]; then
  shift
  exec "$OPENSSL_BIN" s_client -cert "$OUT_DIR/client/leaf.pem" \\
    -cert_chain "$OUT_DIR/client/chain.pem" -key "$OUT_DIR/client/key.pem" "\$@"
fi
exec "$OPENSSL_BIN" "\$@"
WRAPPER
chmod 755 "$OUT_DIR/openssl"

SCAN=(testssl --quiet --color 0 --warnings batch --nodns none --add-ca "$OUT_DIR/bundle.pem"
  --openssl "$OUT_DIR/openssl" -p -s -f -S -P -U -e
  --jsonfile "$OUT_DIR/testssl.json" --logfile "$OUT_DIR/testssl.log" "$TLS_INBOUND")
say "$(testssl --version 2>/dev/null | grep -o 'testssl *[0-9][0-9.]*' | head -1 | tr -s ' '), $(openssl version)"
say "${SCAN[*]}"
start=$SECONDS
scan_rc=0
"${SCAN[@]}" >"$OUT_DIR/testssl.out" 2>&1 || scan_rc=$?
say "scan finished in $((SECONDS - start))s (testssl exit status $scan_rc); output in $OUT_DIR"
if [ ! -s "$OUT_DIR/testssl.json" ]; then
  tail -20 "$OUT_DIR/testssl.out" >&2
  echo "testssl_scan: testssl wrote no JSON findings" >&2
  exit 1
fi

say "verdict"
python3 - "$OUT_DIR/testssl.json" <<'PY'
import json
import sys

findings = json.load(open(sys.argv[1]))
by_id = {}
for f in findings:
    by_id.setdefault(f["id"], []).append(f)

# Severity HIGH/CRITICAL findings the X.509-SVID profile produces by design
# (docs/security.md says why each one is not a weakness here).
BY_DESIGN = {
    "cert_trust": "an X.509-SVID names a SPIFFE ID (URI SAN), never a host",
    "cert_expirationStatus": "certificates live an hour (default) and rotate at half-life",
    "cert_notAfter": "same finding as cert_expirationStatus",
    "cert_revocation": "no CRL DP/OCSP URL: the CA's CRL is pushed in the trust bundle",
}

failures = 0


def check(name, ok, detail):
    global failures
    print("  %-4s %s: %s" % ("ok" if ok else "FAIL", name, detail))
    if not ok:
        failures += 1


def first(ident):
    entries = by_id.get(ident)
    return entries[0]["finding"] if entries else "(no finding)"


for ident in ("SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2"):
    check("%s not offered" % ident, first(ident).startswith("not offered"), first(ident))
check("TLS1_3 offered", first("TLS1_3").startswith("offered"), first("TLS1_3"))
for cat in ("NULL", "aNULL", "EXPORT", "LOW", "3DES_IDEA", "AVERAGE"):
    ident = "cipherlist_" + cat
    check("%s not offered" % ident, first(ident) == "not offered", first(ident))
check("cipherlist_STRONG offered", first("cipherlist_STRONG") == "offered",
      first("cipherlist_STRONG"))
for ident in ("secure_renego", "secure_client_renego", "CRIME_TLS"):
    entries = by_id.get(ident, [])
    check("%s OK" % ident, bool(entries) and all(e["severity"] == "OK" for e in entries),
          "; ".join(e["finding"] for e in entries) or "(no finding)")
check("cert_chain_of_trust passed", first("cert_chain_of_trust").startswith("passed"),
      first("cert_chain_of_trust"))
problems = [f for f in findings if f["id"] in ("scanProblem", "scanTime") and
            f["severity"] in ("WARN", "FATAL")]
check("the scan ran to the end", not problems,
      "; ".join(p["finding"] for p in problems) or "no scanProblem")
severe = [f for f in findings if f["severity"] in ("HIGH", "CRITICAL")]
unexpected = [f for f in severe if f["id"] not in BY_DESIGN]
check("no HIGH/CRITICAL finding beyond the X.509-SVID ones", not unexpected,
      "; ".join("%s %s: %s" % (f["id"], f["severity"], f["finding"]) for f in unexpected)
      or "%d by design" % len(severe))
for f in severe:
    if f["id"] in BY_DESIGN:
        print("       by design: %s %s (%s): %s" % (f["id"], f["severity"], f["finding"],
                                                    BY_DESIGN[f["id"]]))
print("  %d check(s) failed" % failures)
sys.exit(1 if failures else 0)
PY
