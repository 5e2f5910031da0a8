# The local mesh of scripts/run-mesh.sh, as functions, so that the e2e test
# (tests/e2e/local_mesh_test.sh) starts and walks through exactly the same
# mesh with binaries from its runfiles. Source it; it runs nothing by itself.
#
# Set before mesh_start:
#   MESH_CA MESH_CTL MESH_SIDECAR MESH_SHOP  the four binaries
#   MESH_POLICY_SRC     examples/shop/policy.yaml
#   MESH_WORK           an empty directory (CA data, logs, access logs)
#   MESH_TTL_SECONDS    certificate lifetime the sidecars ask for (20); they
#                       renew at about half of it
#   MESH_ROTATION_WAIT  seconds to watch rotations under traffic (28)
#   MESH_DRIVE_INTERVAL frontend's call interval to orders (500ms)
# and call mesh_set_ports BASE first. mesh_stop stops whatever was started
# (it is safe to call twice, and from a trap).
#
# Ports, from BASE (MESHGUARD_PORT_BASE, default 15000), on 127.0.0.1 only:
#   CA                     BASE+12 gRPC (TLS), BASE+14 HTTP (/metrics)
#   frontend / orders / inventory, at BASE+100 / +200 / +300:
#     +0 sidecar admin HTTP, +1 sidecar outbound (h2c, the app calls out here),
#     +6 sidecar inbound (mTLS, peers call in here), +8 the app itself (h2c)
# as in the sidecar's own defaults (15000 admin, 15001 outbound, 15006
# inbound).

MESH_TRUST_DOMAIN=cluster.local
MESH_SERVICES=(frontend orders inventory)
MESH_PIDS=()
MESH_PROBLEMS=0

mesh_say() { printf '\n==> %s\n' "$*"; }
mesh_note() { printf '   %s\n' "$*"; }
mesh_problem() {
  printf '   PROBLEM: %s\n' "$*"
  MESH_PROBLEMS=$((MESH_PROBLEMS + 1))
}

mesh_id() { echo "spiffe://$MESH_TRUST_DOMAIN/ns/shop/sa/$1"; }

# mesh_set_ports BASE: the port variables, or an error for a bad BASE.
mesh_set_ports() {
  local base=$1
  if ! [[ "$base" =~ ^[0-9]+$ ]] || [ "$base" -lt 1024 ] || [ "$base" -gt 65000 ]; then
    echo "mesh: MESHGUARD_PORT_BASE=$base: want a number from 1024 to 65000" >&2
    return 2
  fi
  MESH_PORT_BASE=$base
  MESH_CA_PORT=$((base + 12))
  MESH_CA_HTTP_PORT=$((base + 14))
  local i=1 svc block
  for svc in "${MESH_SERVICES[@]}"; do
    block=$((base + 100 * i))
    printf -v "MESH_ADMIN_${svc}" '%s' $((block + 0))
    printf -v "MESH_OUT_${svc}" '%s' $((block + 1))
    printf -v "MESH_IN_${svc}" '%s' $((block + 6))
    printf -v "MESH_APP_${svc}" '%s' $((block + 8))
    i=$((i + 1))
  done
}

# mesh_port NAME SERVICE: e.g. mesh_port ADMIN orders.
mesh_port() { local v="MESH_$1_$2"; echo "${!v}"; }

mesh_all_ports() {
  local svc
  echo "$MESH_CA_PORT" "$MESH_CA_HTTP_PORT"
  for svc in "${MESH_SERVICES[@]}"; do
    echo "$(mesh_port ADMIN "$svc")" "$(mesh_port OUT "$svc")" \
      "$(mesh_port IN "$svc")" "$(mesh_port APP "$svc")"
  done
}

mesh_port_in_use() {
  if command -v ss >/dev/null 2>&1; then
    [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}

# Every port the mesh needs is free, or a clear error naming the taken ones.
mesh_check_ports() {
  local busy=() p
  for p in $(mesh_all_ports); do
    if mesh_port_in_use "$p"; then busy+=("$p"); fi
  done
  if [ ${#busy[@]} -gt 0 ]; then
    echo "mesh: port(s) ${busy[*]} on 127.0.0.1 are already in use." >&2
    echo "mesh: the mesh needs $(mesh_all_ports | tr '\n' ' ')" >&2
    echo "mesh: stop what holds them (another run-mesh.sh?), or shift every port with" \
      "MESHGUARD_PORT_BASE (now $MESH_PORT_BASE), e.g. MESHGUARD_PORT_BASE=25000" >&2
    return 1
  fi
}

# mesh_spawn NAME LOG CMD...: starts CMD in the background, remembered for
# mesh_stop.
mesh_spawn() {
  local name=$1 log=$2
  shift 2
  "$@" >"$log" 2>&1 &
  MESH_PIDS+=($!)
  eval "MESH_PID_${name}=$!"
}

mesh_alive() { kill -0 "$1" 2>/dev/null; }

# mesh_wait_for WHAT PID LOG SECONDS CHECK...: polls CHECK until it passes;
# fails with the log's tail if PID dies or time runs out.
mesh_wait_for() {
  local what=$1 pid=$2 log=$3 seconds=$4
  shift 4
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if ! mesh_alive "$pid"; then
      echo "mesh: $what exited while starting; the end of $log:" >&2
      tail -20 "$log" >&2
      return 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      echo "mesh: $what was not ready after ${seconds}s; the end of $log:" >&2
      tail -20 "$log" >&2
      return 1
    fi
    sleep 0.1
  done
}

mesh_http_ok() { curl -fsS --max-time 2 "http://127.0.0.1:$1$2"; }

mesh_ctl() {
  "$MESH_CTL" --ca "127.0.0.1:$MESH_CA_PORT" --ca-bundle "$MESH_WORK/ca/bundle.pem" \
    --admin-socket "$MESH_WORK/ca/admin.sock" "$@"
}

mesh_route() {
  local svc=$1
  echo "$svc=127.0.0.1:$(mesh_port IN "$svc")=$(mesh_id "$svc")"
}

mesh_start() {
  local svc
  # Every step checks its own result: callers may run this where errexit is
  # off (in an if, or after ||).
  mkdir -p "$MESH_WORK" || return 1
  cp "$MESH_POLICY_SRC" "$MESH_WORK/policy.yaml" || return 1

  mesh_say "the CA: a fresh root and intermediate for trust domain $MESH_TRUST_DOMAIN"
  "$MESH_CA" init --data-dir "$MESH_WORK/ca" --trust-domain "$MESH_TRUST_DOMAIN" \
    >"$MESH_WORK/ca-init.log" 2>&1 || {
    cat "$MESH_WORK/ca-init.log" >&2
    return 1
  }
  mesh_spawn ca "$MESH_WORK/ca.log" "$MESH_CA" serve --data-dir "$MESH_WORK/ca" \
    --listen "127.0.0.1:$MESH_CA_PORT" --admin-listen "127.0.0.1:$MESH_CA_HTTP_PORT"
  mesh_wait_for meshguard-ca "$MESH_PID_ca" "$MESH_WORK/ca.log" 30 \
    mesh_http_ok "$MESH_CA_HTTP_PORT" /readyz || return 1
  mesh_note "meshguard-ca serves on 127.0.0.1:$MESH_CA_PORT (gRPC over TLS); its data (SQLite issuance log, keys) is in $MESH_WORK/ca"

  mesh_say "three sidecars, each getting its own identity from the CA with a one-time join token"
  declare -A routes=(
    # frontend can reach orders (allowed) and inventory (which will refuse it).
    [frontend]="$(mesh_route orders),$(mesh_route inventory)"
    [orders]="$(mesh_route inventory)"
    # inventory has a route to orders only so the demo can show a call that
    # no rule allows.
    [inventory]="$(mesh_route orders)"
  )
  for svc in "${MESH_SERVICES[@]}"; do
    mkdir -p "$MESH_WORK/$svc" || return 1
    local token
    token=$(mesh_ctl token create --spiffe-id "$(mesh_id "$svc")" --ttl 10m \
      2>"$MESH_WORK/$svc/token.err") || {
      cat "$MESH_WORK/$svc/token.err" >&2
      return 1
    }
    mesh_spawn "sidecar_$svc" "$MESH_WORK/$svc/sidecar.log" "$MESH_SIDECAR" \
      --ca "127.0.0.1:$MESH_CA_PORT" --ca-bundle "$MESH_WORK/ca/bundle.pem" \
      --join-token "$token" --ttl "${MESH_TTL_SECONDS}s" \
      --app "127.0.0.1:$(mesh_port APP "$svc")" \
      --inbound-listen "127.0.0.1:$(mesh_port IN "$svc")" \
      --outbound-listen "127.0.0.1:$(mesh_port OUT "$svc")" \
      --admin-listen "127.0.0.1:$(mesh_port ADMIN "$svc")" \
      --workers 1 --policy "$MESH_WORK/policy.yaml" \
      --access-log "$MESH_WORK/$svc/access.log" --route "${routes[$svc]}"
    printf '   %-9s %s: admin :%s, outbound :%s, inbound (mTLS) :%s -> app :%s\n' \
      "$svc" "$(mesh_id "$svc")" "$(mesh_port ADMIN "$svc")" \
      "$(mesh_port OUT "$svc")" "$(mesh_port IN "$svc")" "$(mesh_port APP "$svc")"
  done
  for svc in "${MESH_SERVICES[@]}"; do
    local pid_var="MESH_PID_sidecar_$svc"
    mesh_wait_for "$svc's sidecar" "${!pid_var}" "$MESH_WORK/$svc/sidecar.log" 60 \
      mesh_http_ok "$(mesh_port ADMIN "$svc")" /readyz || return 1
  done
  mesh_note "all three ready (/readyz): each holds a certificate for its SPIFFE ID that lives" \
    "${MESH_TTL_SECONDS}s (--ttl) and is renewed at about half-life"

  mesh_say "the three services: plain gRPC (no TLS code), each behind its own sidecar"
  # Callees first, so that frontend's first call finds them up.
  for svc in inventory orders frontend; do
    local extra=()
    if [ "$svc" = frontend ]; then extra=(--drive-interval "$MESH_DRIVE_INTERVAL"); fi
    mesh_spawn "app_$svc" "$MESH_WORK/$svc/service.log" "$MESH_SHOP" --name "$svc" \
      --listen "127.0.0.1:$(mesh_port APP "$svc")" \
      --sidecar "127.0.0.1:$(mesh_port OUT "$svc")" "${extra[@]}"
    local pid_var="MESH_PID_app_$svc"
    mesh_wait_for "$svc" "${!pid_var}" "$MESH_WORK/$svc/service.log" 20 \
      grep -q 'listening on' "$MESH_WORK/$svc/service.log" || return 1
  done
  mesh_note "inventory on :$MESH_APP_inventory, orders on :$MESH_APP_orders, frontend on :$MESH_APP_frontend"
  mesh_note "frontend calls orders (Create, then Get) every $MESH_DRIVE_INTERVAL through its sidecar," \
    "from now on; its log: $MESH_WORK/frontend/service.log"
}

mesh_driver_count() {
  grep -c "frontend -> orders\.[A-Za-z]*: $1" "$MESH_WORK/frontend/service.log" 2>/dev/null || true
}

mesh_show_identities() {
  mesh_say "the identities the CA issued (meshguardctl list: its issuance log)"
  local list
  list=$(mesh_ctl list 2>&1) || {
    mesh_problem "meshguardctl list failed: $list"
    return 0
  }
  echo "$list" | sed 's/^/   /'
  local svc
  for svc in "${MESH_SERVICES[@]}"; do
    grep -Eq " join_token +no +$(mesh_id "$svc")\$" <<<"$list" ||
      mesh_problem "no certificate issued to $(mesh_id "$svc") for its join token"
  done
  mesh_note "one per sidecar, for its one-time join token (AUTH join_token); the renewals that follow"
  mesh_note "authenticate with the current certificate over mTLS (AUTH renewal). No private key left"
  mesh_note "its sidecar: each made its own key and sent the CA a CSR. (NOT_BEFORE is set 5 minutes"
  mesh_note "back for clock skew; each certificate is good for ${MESH_TTL_SECONDS}s from its issuance.)"
}

mesh_show_calls() {
  mesh_say "a successful call through the mesh: a customer buys a book at the frontend"
  mesh_note "(the customer calls frontend's app directly; frontend -> orders -> inventory go through the sidecars over mTLS)"
  local out
  if out=$("$MESH_SHOP" --name customer --call frontend.Buy \
    --target "127.0.0.1:$MESH_APP_frontend" 2>&1); then
    echo "$out" | sed 's/^/   /'
  else
    echo "$out" | sed 's/^/   /'
    mesh_problem "frontend.Buy failed"
    return 0
  fi
  grep -q "orders *saw caller $(mesh_id frontend) " <<<"$out" ||
    mesh_problem "orders did not see frontend's identity"
  grep -q "inventory *saw caller $(mesh_id orders) " <<<"$out" ||
    mesh_problem "inventory did not see orders' identity"
  mesh_note "what each service logged for it (the caller's identity comes from the x-forwarded-client-cert"
  mesh_note "header its own sidecar set after verifying the caller's certificate):"
  local order
  order=$(sed -n 's/.*frontend.Buy: OK order \([^ ]*\) .*/\1/p' <<<"$out")
  grep -h "Buy from .*order $order\$" "$MESH_WORK/frontend/service.log" | sed 's/^/     /'
  grep -h "Create from .*order $order " "$MESH_WORK/orders/service.log" | sed 's/^/     /'
  local reservation
  reservation=$(sed -n 's/.*reservation \([^)]*\)).*/\1/p' <<<"$out" | head -1)
  grep -h "Reserve from .*-> $reservation\$" "$MESH_WORK/inventory/service.log" | sed 's/^/     /'
}

mesh_show_denials() {
  mesh_say "a forbidden call: frontend tries to skip orders and call inventory directly"
  local out
  if out=$("$MESH_SHOP" --name frontend --call inventory.Get \
    --sidecar "127.0.0.1:$MESH_OUT_frontend" 2>&1); then
    echo "$out" | sed 's/^/   /'
    mesh_problem "frontend -> inventory was allowed"
  else
    echo "$out" | sed 's/^/   /'
  fi
  grep -q 'PERMISSION_DENIED: meshguard: .* may not call /shop.v1.Inventory/Get: denied by rule "frontend-must-go-through-orders"' \
    <<<"$out" || mesh_problem "frontend -> inventory was not denied by rule frontend-must-go-through-orders"
  mesh_note "inventory's sidecar refused it after the mTLS handshake proved the caller is frontend;"
  mesh_note "the inventory app never saw the call. The policy ($MESH_WORK/policy.yaml) lets frontend call"
  mesh_note "/shop.v1.Orders/*, orders call /shop.v1.Inventory/*, and denies everything else."
  local line
  line=$(grep '"decision":"deny"' "$MESH_WORK/inventory/access.log" 2>/dev/null | tail -1 |
    python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print(" ".join("%s=%s" % (k, d.get(k)) for k in ("peer", "method", "decision", "rule", "grpc_status")))' \
      2>/dev/null || true)
  [ -z "$line" ] || mesh_note "inventory's sidecar wrote to its access log: $line"

  mesh_say "a call no rule allows: inventory calls orders, refused by the default action (DENY)"
  if out=$("$MESH_SHOP" --name inventory --call orders.Create \
    --sidecar "127.0.0.1:$MESH_OUT_inventory" 2>&1); then
    echo "$out" | sed 's/^/   /'
    mesh_problem "inventory -> orders was allowed"
  else
    echo "$out" | sed 's/^/   /'
  fi
  grep -q 'PERMISSION_DENIED: .*denied by the default policy' <<<"$out" ||
    mesh_problem "inventory -> orders was not denied by the default policy"
}

mesh_short() { echo "${1:0:8}"; }

# "SERIAL RENEWALS_OK" of a sidecar's current certificate, from its /certs.
mesh_cert_state() {
  mesh_http_ok "$(mesh_port ADMIN "$1")" /certs 2>/dev/null |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("serial") or "-", int(d.get("renewals_ok", 0)))' \
      2>/dev/null || echo "- 0"
}

mesh_show_rotation() {
  local wait=$MESH_ROTATION_WAIT svc
  mesh_say "certificate rotation under traffic: watching for ${wait}s while frontend keeps calling orders"
  mesh_note "certificates live ${MESH_TTL_SECONDS}s; each sidecar renews at about half-life over mTLS (new key, new serial)"
  mesh_note "and hands the new one to its listeners: new connections use it, open ones finish on the old one."
  declare -A first=() last=() renew0=() renewals=()
  local ok0 failed0
  ok0=$(mesh_driver_count OK)
  failed0=$(mesh_driver_count FAILED)
  local start=$SECONDS step=5 t serial count line mark
  while :; do
    t=$((SECONDS - start))
    line=$(printf '   t+%2ds  serials:' "$t")
    for svc in "${MESH_SERVICES[@]}"; do
      read -r serial count < <(mesh_cert_state "$svc")
      if [ -z "${first[$svc]:-}" ]; then
        first[$svc]=$serial
        last[$svc]=$serial
        renew0[$svc]=$count
      fi
      mark=' '
      if [ "$serial" != "${last[$svc]}" ]; then mark='*'; fi
      last[$svc]=$serial
      renewals[$svc]=$((count - renew0[$svc]))
      line+=$(printf ' %s %s%s' "$svc" "$(mesh_short "$serial")" "$mark")
    done
    line+=$(printf '  frontend -> orders: %s OK, %s failed' \
      $(($(mesh_driver_count OK) - ok0)) $(($(mesh_driver_count FAILED) - failed0)))
    echo "$line"
    [ "$t" -ge "$wait" ] && break
    sleep $((wait - t < step ? wait - t : step))
  done
  mesh_note "(* = a new certificate since the line before; serials shortened to 8 hex digits)"
  for svc in "${MESH_SERVICES[@]}"; do
    if [ "${first[$svc]}" = "${last[$svc]}" ]; then
      mesh_problem "$svc's sidecar kept serial ${first[$svc]} for ${wait}s"
    elif [ "${renewals[$svc]}" -gt $((4 * wait / MESH_TTL_SECONDS + 2)) ]; then
      # A renewal storm (as when a backdated notBefore made "half-life" past).
      mesh_problem "$svc's sidecar renewed ${renewals[$svc]} times in ${wait}s (about every $((MESH_TTL_SECONDS / 2))s expected)"
    else
      printf '   %-9s renewed %d time(s): serial %s -> %s\n' "$svc" "${renewals[$svc]}" \
        "${first[$svc]}" "${last[$svc]}"
    fi
  done
  local ok failed
  ok=$(($(mesh_driver_count OK) - ok0))
  failed=$(($(mesh_driver_count FAILED) - failed0))
  mesh_note "meanwhile frontend -> orders -> inventory: $ok calls OK, $failed failed"
  if [ "$ok" -eq 0 ]; then mesh_problem "no successful frontend -> orders calls during rotation"; fi
  if [ "$failed" -ne 0 ]; then
    mesh_problem "$failed frontend -> orders calls failed during rotation:"
    grep "frontend -> orders\.[A-Za-z]*: FAILED" "$MESH_WORK/frontend/service.log" | tail -5 | sed 's/^/     /'
  fi
}

mesh_show_metrics() {
  mesh_say "metrics (Prometheus text) and the other admin pages"
  local svc
  for svc in "${MESH_SERVICES[@]}"; do
    printf '   curl http://127.0.0.1:%s/metrics     the %s sidecar (also /certs /readyz /config_dump /policy)\n' \
      "$(mesh_port ADMIN "$svc")" "$svc"
  done
  printf '   curl http://127.0.0.1:%s/metrics     the CA\n' "$MESH_CA_HTTP_PORT"
  mesh_note "calls each sidecar let in or refused (meshguard_requests_total, inbound):"
  for svc in orders inventory; do
    mesh_http_ok "$(mesh_port ADMIN "$svc")" /metrics 2>/dev/null |
      grep '^meshguard_requests_total{direction="inbound"' | sed "s/^/     $svc: /" || true
  done
  mesh_note "certificate renewals:"
  for svc in "${MESH_SERVICES[@]}"; do
    mesh_http_ok "$(mesh_port ADMIN "$svc")" /metrics 2>/dev/null |
      grep '^meshguard_certificate_renewals_total' | sed "s/^/     $svc: /" || true
  done
  mesh_http_ok "$MESH_CA_HTTP_PORT" /metrics 2>/dev/null |
    grep '^meshguard_ca_issuances_total' | sed 's/^/     CA: /' || true
}

# The whole walkthrough; returns non-zero when something did not happen as
# it should (each one is printed as a PROBLEM line).
mesh_walkthrough() {
  MESH_PROBLEMS=0
  mesh_show_identities
  mesh_show_calls
  mesh_show_denials
  mesh_show_rotation
  mesh_show_metrics
  local total_failed
  total_failed=$(mesh_driver_count FAILED)
  mesh_say "summary"
  mesh_note "frontend -> orders since the start: $(mesh_driver_count OK) calls OK, $total_failed failed"
  mesh_note "logs: $MESH_WORK/{ca.log,SERVICE/service.log,SERVICE/sidecar.log,SERVICE/access.log}"
  if [ "$MESH_PROBLEMS" -gt 0 ]; then
    mesh_note "$MESH_PROBLEMS PROBLEM(s) above."
    return 1
  fi
  mesh_note "everything happened as it should."
}

# mesh_term_and_wait PID...: SIGTERM, then SIGKILL for whatever is still
# there after 10s; reaps them all.
mesh_term_and_wait() {
  local pid deadline=$((SECONDS + 10))
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "$@"; do
    while mesh_alive "$pid" && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    if mesh_alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
    wait "$pid" 2>/dev/null || true
  done
}

# Stops frontend first (its driver finishes its call and prints its totals),
# then the other apps, then the sidecars and the CA, so that no call in
# flight fails because of the shutdown itself.
mesh_stop() {
  [ ${#MESH_PIDS[@]} -gt 0 ] || return 0
  local pid first=() apps=() rest=()
  local app_pids=" ${MESH_PID_app_orders:-} ${MESH_PID_app_inventory:-} "
  for pid in "${MESH_PIDS[@]}"; do
    if [ "$pid" = "${MESH_PID_app_frontend:-}" ]; then
      first+=("$pid")
    elif [[ "$app_pids" == *" $pid "* ]]; then
      apps+=("$pid")
    else
      rest+=("$pid")
    fi
  done
  if [ ${#first[@]} -gt 0 ]; then mesh_term_and_wait "${first[@]}"; fi
  if [ ${#apps[@]} -gt 0 ]; then mesh_term_and_wait "${apps[@]}"; fi
  if [ ${#rest[@]} -gt 0 ]; then mesh_term_and_wait "${rest[@]}"; fi
  MESH_PIDS=()
}
