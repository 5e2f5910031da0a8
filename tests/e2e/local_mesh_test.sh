#!/usr/bin/env bash
# The README's local mesh, end to end: starts it with scripts/lib/mesh.sh
# (what scripts/run-mesh.sh runs) from this test's runfiles, with 6-second
# certificates (renewed every ~3s), runs the walkthrough and checks what it showed:
#   - the CA issued the three identities;
#   - customer -> frontend -> orders -> inventory succeeds, and orders and
#     inventory saw the right caller identities;
#   - frontend -> inventory is PERMISSION_DENIED naming the DENY rule, and
#     inventory -> orders is denied by the default policy;
#   - every sidecar rotated its certificate and frontend's driver had no
#     failed call, during the rotations or at all;
#   - nothing is left running afterwards.
set -euo pipefail

R="$TEST_SRCDIR/$TEST_WORKSPACE"
# shellcheck source=../../scripts/lib/mesh.sh
source "$R/scripts/lib/mesh.sh"
MESH_CA="$R/identity/ca/meshguard-ca"
MESH_CTL="$R/cli/meshguardctl"
MESH_SIDECAR="$R/sidecar/meshguard-sidecar"
MESH_SHOP="$R/examples/shop/shop_service"
MESH_POLICY_SRC="$R/examples/shop/policy.yaml"
MESH_TTL_SECONDS=6
MESH_ROTATION_WAIT=10
MESH_DRIVE_INTERVAL=200ms

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# A block of free ports below Linux's ephemeral range (32768+), so that it
# collides neither with run-mesh.sh's default 15000 block nor, likely, with
# anything else.
found=0
for _ in $(seq 1 20); do
  mesh_set_ports $((20000 + (RANDOM % 12) * 1000))
  if mesh_check_ports 2>/dev/null; then found=1; break; fi
done
[ "$found" = 1 ] || fail "no free block of ports in 20000-31999"
echo "port base $MESH_PORT_BASE"

# /tmp, not TEST_TMPDIR: the CA's admin socket path must fit sun_path.
MESH_WORK=$(mktemp -d /tmp/meshguard-e2e.XXXXXX)
OUT="$MESH_WORK.out"
trap 'mesh_stop; rm -rf "$MESH_WORK" "$OUT"' EXIT

if ! mesh_start >"$OUT" 2>&1; then
  cat "$OUT"
  fail "the mesh did not start"
fi
walkthrough=0
mesh_walkthrough >>"$OUT" 2>&1 || walkthrough=$?
cat "$OUT"
echo "---- checks"

pids=("${MESH_PIDS[@]}")
mesh_stop
driver_totals=$(grep 'frontend driver:' "$MESH_WORK/frontend/service.log" || true)

expect() {  # expect DESCRIPTION EXTENDED_REGEX
  grep -Eq -- "$2" "$OUT" || fail "$1: no line matches /$2/"
  echo "ok: $1"
}

[ "$walkthrough" = 0 ] || fail "the walkthrough reported problems: $(grep PROBLEM "$OUT" || true)"
echo "ok: the walkthrough reported no problem"

for svc in frontend orders inventory; do
  expect "the CA issued $svc's identity" \
    "^   [0-9a-f]+ +.* join_token +no +spiffe://cluster\.local/ns/shop/sa/$svc\$"
done

expect "customer -> frontend -> orders -> inventory succeeded" \
  '^   customer -> frontend\.Buy: OK order o-[0-9]+ '
expect "orders saw frontend's identity" \
  '^       orders +saw caller spiffe://cluster\.local/ns/shop/sa/frontend '
expect "inventory saw orders' identity" \
  '^       inventory +saw caller spiffe://cluster\.local/ns/shop/sa/orders '
expect "orders' app logged frontend as the caller" \
  'orders: Create from spiffe://cluster\.local/ns/shop/sa/frontend: order o-'

expect "frontend -> inventory denied by the DENY rule" \
  'frontend -> inventory\.Get: FAILED PERMISSION_DENIED: meshguard: spiffe://cluster\.local/ns/shop/sa/frontend may not call /shop\.v1\.Inventory/Get: denied by rule "frontend-must-go-through-orders"'
expect "inventory -> orders denied by the default policy" \
  'inventory -> orders\.Create: FAILED PERMISSION_DENIED: .*denied by the default policy'

for svc in frontend orders inventory; do
  expect "$svc's sidecar rotated its certificate" \
    "^   $svc +renewed [1-9][0-9]* time\(s\): serial ([0-9a-f]+) -> ([0-9a-f]+)\$"
done
expect "traffic went on through the rotations with no failure" \
  'meanwhile frontend -> orders -> inventory: [1-9][0-9]* calls OK, 0 failed$'
[[ "$driver_totals" =~ ^frontend\ driver:\ [1-9][0-9]*\ calls,\ 0\ failed$ ]] ||
  fail "frontend's driver totals: '$driver_totals'"
echo "ok: $driver_totals"

for pid in "${pids[@]}"; do
  if kill -0 "$pid" 2>/dev/null; then fail "process $pid still running after mesh_stop"; fi
done
for bin in "$MESH_CA" "$MESH_SIDECAR" "$MESH_SHOP"; do
  if pgrep -f "$bin" >/dev/null; then
    fail "still running: $(pgrep -af "$bin")"
  fi
done
echo "ok: nothing left running (${#pids[@]} processes stopped)"
echo PASS
