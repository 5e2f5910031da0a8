#!/usr/bin/env bash
# The README's main command: installs, builds and starts the local mesh on
# loopback, then walks through what it does in plain words.
#
#   scripts/run-mesh.sh                 run the walkthrough, then stop everything
#   scripts/run-mesh.sh --keep-running  leave it up for meshguardctl and curl
#
# What exists today: meshguard-ca and meshguardctl (identity issuance,
# renewal, revocation, trust bundle). The sidecar data plane is not built
# yet, so no service traffic is proxied; this script says so rather than
# pretending.
set -euo pipefail
cd "$(dirname "$0")/.."

KEEP_RUNNING=0
for arg in "$@"; do
  case "$arg" in
    --keep-running) KEEP_RUNNING=1 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run-mesh: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done

CA_PORT=${MESHGUARD_CA_PORT:-15012}
CA_HTTP_PORT=${MESHGUARD_CA_HTTP_PORT:-15014}
TRUST_DOMAIN=cluster.local

bash scripts/setup.sh
echo "==> building meshguard (bazel build; the first build takes a few minutes)"
if ! bazel build //identity/ca:meshguard-ca //cli:meshguardctl >/tmp/meshguard-build.log 2>&1; then
  grep -E '^(ERROR|FAILED)' /tmp/meshguard-build.log | head -20 >&2
  echo "build failed; full log in /tmp/meshguard-build.log" >&2
  exit 1
fi
BIN=$(bazel info bazel-bin 2>/dev/null)
CA="$BIN/identity/ca/meshguard-ca"
CTL="$BIN/cli/meshguardctl"

WORK=$(mktemp -d /tmp/meshguard-mesh.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo; echo "==> stopping"; exit 0' INT TERM

say() { printf '\n==> %s\n' "$*"; }

say "creating a CA for trust domain $TRUST_DOMAIN in $WORK/ca"
"$CA" init --data-dir "$WORK/ca" --trust-domain "$TRUST_DOMAIN"

say "starting meshguard-ca on 127.0.0.1:$CA_PORT (metrics on 127.0.0.1:$CA_HTTP_PORT)"
"$CA" serve --data-dir "$WORK/ca" --listen "127.0.0.1:$CA_PORT" \
  --admin-listen "127.0.0.1:$CA_HTTP_PORT" >"$WORK/ca.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$CA_HTTP_PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$CA_HTTP_PORT/readyz" >/dev/null || {
  echo "meshguard-ca did not become ready; its log:" >&2; cat "$WORK/ca.log" >&2; exit 1; }

CTLG=(--ca "127.0.0.1:$CA_PORT" --ca-bundle "$WORK/ca/bundle.pem" --admin-socket "$WORK/ca/admin.sock")

for svc in frontend orders inventory; do
  id="spiffe://$TRUST_DOMAIN/ns/shop/sa/$svc"
  say "issuing an identity to $svc: a one-time join token, then a certificate for $id"
  token=$("$CTL" "${CTLG[@]}" token create --spiffe-id "$id" --ttl 10m 2>/dev/null)
  "$CTL" "${CTLG[@]}" cert request --join-token "$token" --ttl 2m --out-dir "$WORK/$svc"
  if "$CTL" "${CTLG[@]}" cert request --join-token "$token" --out-dir "$WORK/$svc-again" 2>"$WORK/err"; then
    echo "ERROR: a join token worked twice" >&2; exit 1
  fi
  echo "   the same token a second time is refused: $(cat "$WORK/err")"
done

say "what a peer checks: orders' certificate verifies against the bundle"
"$CTL" verify --bundle "$WORK/ca/bundle.pem" --chain "$WORK/orders/cert.pem"

say "rotation: frontend renews over mTLS with its current certificate (new key, new serial, same identity)"
old_serial=$("$CTL" cert inspect "$WORK/frontend/cert.pem" | awk '/^serial:/{print $2; exit}')
"$CTL" "${CTLG[@]}" cert renew --cert "$WORK/frontend/cert.pem" --key "$WORK/frontend/key.pem" \
  --ttl 2m --out-dir "$WORK/frontend"
new_serial=$("$CTL" cert inspect "$WORK/frontend/cert.pem" | awk '/^serial:/{print $2; exit}')
echo "   serial $old_serial -> $new_serial"

say "revocation: the CA revokes inventory; the next bundle's CRL refuses it"
"$CTL" "${CTLG[@]}" revoke --spiffe-id "spiffe://$TRUST_DOMAIN/ns/shop/sa/inventory" --reason demo
"$CTL" "${CTLG[@]}" bundle fetch --out-dir "$WORK/bundle"
"$CTL" verify --bundle "$WORK/bundle/bundle.pem" --crl "$WORK/bundle/crl.pem" \
  --chain "$WORK/inventory/cert.pem" || true

say "the issuance log"
"$CTL" "${CTLG[@]}" list

say "metrics: curl http://127.0.0.1:$CA_HTTP_PORT/metrics"
curl -fsS "http://127.0.0.1:$CA_HTTP_PORT/metrics" | grep -E '^meshguard_ca_issuances_total' || true

cat <<TXT

Not yet in this version: the sidecar data plane (meshguard-sidecar: mTLS
proxying, authorization). No service-to-service traffic runs here yet; the
walkthrough above is the identity system alone.
TXT

if [ "$KEEP_RUNNING" = 1 ]; then
  say "left running (Ctrl-C stops everything). Try:"
  echo "   $CTL ${CTLG[*]} list --live"
  echo "   curl http://127.0.0.1:$CA_HTTP_PORT/metrics"
  wait
fi
