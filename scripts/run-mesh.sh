#!/usr/bin/env bash
# The README's main command: installs, builds and starts a small mesh on
# loopback, then walks through what it does in plain words (1-2 minutes):
# meshguard-ca with a fresh root, three example gRPC services (frontend,
# orders, inventory; examples/shop/) each behind its own meshguard-sidecar
# with its own SPIFFE identity, and a policy that lets frontend call orders
# and orders call inventory, and nothing else. It shows the identities
# issued, calls that succeed (and who each hop saw calling), calls that are
# denied (and the rule that denied them), certificates rotating every ~10s
# while traffic goes on, and where the metrics are.
#
#   scripts/run-mesh.sh                 run the walkthrough, then stop everything
#   scripts/run-mesh.sh --keep-running  then leave it up for meshguardctl and curl
#
# Ctrl-C stops everything at any time; nothing is left running (except the
# Bazel server, which is Bazel's own).
#
# Environment:
#   MESHGUARD_PORT_BASE  shifts every port (default 15000): CA BASE+12 and
#                        BASE+14 (HTTP); frontend, orders, inventory at
#                        BASE+100, +200, +300: +0 sidecar admin, +1 outbound,
#                        +6 inbound (mTLS), +8 the app. 127.0.0.1 only.
#   MESHGUARD_BAZEL      the bazel command (default "bazel"), e.g.
#                        "bazel --output_base=/tmp/ob" while developing.
set -euo pipefail
cd "$(dirname "$0")/.."

KEEP_RUNNING=0
for arg in "$@"; do
  case "$arg" in
    --keep-running) KEEP_RUNNING=1 ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run-mesh: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done

# shellcheck source=lib/mesh.sh
source scripts/lib/mesh.sh
mesh_set_ports "${MESHGUARD_PORT_BASE:-15000}" || exit 2
MESH_TTL_SECONDS=20
MESH_ROTATION_WAIT=28
MESH_DRIVE_INTERVAL=500ms
MESH_POLICY_SRC=examples/shop/policy.yaml

bash scripts/setup.sh
# Word-split on purpose: MESHGUARD_BAZEL may carry startup options.
read -r -a BAZEL <<<"${MESHGUARD_BAZEL:-bazel}"
TARGETS=(//identity/ca:meshguard-ca //cli:meshguardctl //sidecar:meshguard-sidecar
  //examples/shop:shop_service)
BUILD_LOG=/tmp/meshguard-build.log
echo "==> building meshguard (bazel build; the first build takes several minutes)"
if ! "${BAZEL[@]}" build "${TARGETS[@]}" >"$BUILD_LOG" 2>&1; then
  grep -E '^(ERROR|FAILED)' "$BUILD_LOG" | head -20 >&2
  echo "run-mesh: the build failed; the full log is in $BUILD_LOG" >&2
  exit 1
fi
BIN=$("${BAZEL[@]}" info bazel-bin 2>/dev/null)
MESH_CA="$BIN/identity/ca/meshguard-ca"
MESH_CTL="$BIN/cli/meshguardctl"
MESH_SIDECAR="$BIN/sidecar/meshguard-sidecar"
MESH_SHOP="$BIN/examples/shop/shop_service"

mesh_check_ports || exit 1

MESH_WORK=$(mktemp -d /tmp/meshguard-mesh.XXXXXX)
cleanup() {
  mesh_stop
  rm -rf "$MESH_WORK"
}
trap cleanup EXIT
# Ctrl-C: the EXIT trap stops everything. Not an error in --keep-running's
# wait, where it is how one stops.
INTERRUPT_STATUS=130
trap 'echo; echo "==> stopping"; exit $INTERRUPT_STATUS' INT TERM

echo "==> meshguard's local mesh on 127.0.0.1 (ports from MESHGUARD_PORT_BASE=$MESH_PORT_BASE);" \
  "work dir $MESH_WORK"
mesh_start
status=0
mesh_walkthrough || status=$?

if [ "$KEEP_RUNNING" = 1 ]; then
  INTERRUPT_STATUS=0
  CTL_FLAGS="--ca 127.0.0.1:$MESH_CA_PORT --ca-bundle $MESH_WORK/ca/bundle.pem --admin-socket $MESH_WORK/ca/admin.sock"
  mesh_say "left running; Ctrl-C stops everything. Things to try:"
  cat <<TXT
   $MESH_CTL $CTL_FLAGS list --live
   curl http://127.0.0.1:$MESH_ADMIN_orders/certs        (frontend :$MESH_ADMIN_frontend, inventory :$MESH_ADMIN_inventory; also /metrics /config_dump /policy)
   $MESH_SHOP --name customer --call frontend.Buy --target 127.0.0.1:$MESH_APP_frontend
   $MESH_SHOP --name frontend --call inventory.Get --sidecar 127.0.0.1:$MESH_OUT_frontend
   $MESH_CTL policy check --policy $MESH_WORK/policy.yaml --from $(mesh_id frontend) --method /shop.v1.Inventory/Get
   tail -f $MESH_WORK/frontend/service.log $MESH_WORK/orders/access.log
   edit $MESH_WORK/policy.yaml: every sidecar reloads it (a broken file is refused, the old policy stays)
TXT
  wait
fi
exit "$status"
