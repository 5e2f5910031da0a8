# shellcheck shell=bash
# MESH_IN_*, MESH_ADMIN_* and MESH_PID_* are set by mesh.sh (printf -v, eval).
# shellcheck disable=SC2154
# The setup shared by tests/tls/inbound_tls_test.sh (bazel test) and
# tests/tls/testssl_scan.sh (by hand): one meshguard-ca and one
# meshguard-sidecar in front of echo_server, on free loopback ports, with
# scripts/lib/mesh.sh's process handling (mesh_spawn, mesh_wait_for,
# mesh_stop). Source mesh.sh first; this runs nothing by itself.
#
# Set before calling: MESH_CA MESH_CTL MESH_SIDECAR ECHO_SERVER (binaries),
# MESH_WORK (an empty directory under /tmp: the CA's admin socket path must
# fit sun_path). Every function returns non-zero, with the reason on stderr,
# when its step fails.

TLS_TRUST_DOMAIN=cluster.local
TLS_SERVER_ID="spiffe://$TLS_TRUST_DOMAIN/ns/tls/sa/server"
# shellcheck disable=SC2034  # used by the test
TLS_CLIENT_ID="spiffe://$TLS_TRUST_DOMAIN/ns/tls/sa/client"

# tls_pick_ports: a free block of ports, as the local mesh test picks one.
# The CA takes the mesh's CA ports, the sidecar frontend's block; orders'
# inbound and admin ports (checked free too) are left for a second CA.
# Sets TLS_INBOUND (host:port) and TLS_ADMIN_PORT.
tls_pick_ports() {
  local _
  for _ in $(seq 1 20); do
    mesh_set_ports $((20000 + (RANDOM % 12) * 1000))
    if mesh_check_ports 2>/dev/null; then
      TLS_INBOUND="127.0.0.1:$MESH_IN_frontend"
      TLS_ADMIN_PORT=$MESH_ADMIN_frontend
      return 0
    fi
  done
  echo "tls: no free block of ports in 20000-31999" >&2
  return 1
}

# tls_start_ca NAME DATA_DIR LISTEN_PORT ADMIN_PORT: a fresh CA (init +
# serve), ready. Its process is MESH_PID_<NAME>.
tls_start_ca() {
  "$MESH_CA" init --data-dir "$2" --trust-domain "$TLS_TRUST_DOMAIN" \
    >"$MESH_WORK/$1-init.log" 2>&1 || {
    cat "$MESH_WORK/$1-init.log" >&2
    return 1
  }
  mesh_spawn "$1" "$MESH_WORK/$1.log" "$MESH_CA" serve --data-dir "$2" \
    --listen "127.0.0.1:$3" --admin-listen "127.0.0.1:$4"
  local pid_var="MESH_PID_$1"
  mesh_wait_for "$1" "${!pid_var}" "$MESH_WORK/$1.log" 30 mesh_http_ok "$4" /readyz
}

# tls_issue CTL DIR ID [meshguardctl cert request flags]: DIR/{key,cert,
# bundle}.pem for ID with a fresh join token, DIR.issue.txt (what cert
# request printed), and DIR/leaf.pem, DIR/chain.pem (the intermediates)
# split out for s_client's -cert and -cert_chain (a -cert_chain holding the
# leaf again is refused by the sidecar: see docs/security.md). CTL is
# mesh_ctl (the mesh's CA) or another function taking meshguardctl commands.
tls_issue() {
  local ctl=$1 dir=$2 id=$3 token
  shift 3
  token=$("$ctl" token create --spiffe-id "$id" --ttl 5m 2>>"$MESH_WORK/ctl.log") || {
    tail -3 "$MESH_WORK/ctl.log" >&2
    return 1
  }
  "$ctl" cert request --join-token "$token" --out-dir "$dir" "$@" >"$dir.issue.txt" \
    2>>"$MESH_WORK/ctl.log" || {
    tail -3 "$MESH_WORK/ctl.log" >&2
    return 1
  }
  awk '/-BEGIN CERTIFICATE-/ {n++} n == 1' "$dir/cert.pem" >"$dir/leaf.pem" &&
    awk '/-BEGIN CERTIFICATE-/ {n++} n >= 2' "$dir/cert.pem" >"$dir/chain.pem"
}

# tls_start_sidecar: echo_server on a free port and meshguard-sidecar
# (identity TLS_SERVER_ID, from the CA started as "ca") in front of it,
# inbound on TLS_INBOUND, ready. No --policy: every peer of the trust domain
# may call, so that a refusal can only come from the TLS layer.
tls_start_sidecar() {
  mesh_spawn app "$MESH_WORK/app.log" "$ECHO_SERVER" --listen 127.0.0.1:0
  mesh_wait_for echo_server "$MESH_PID_app" "$MESH_WORK/app.log" 20 \
    grep -q 'listening on' "$MESH_WORK/app.log" || return 1
  TLS_APP_PORT=$(sed -n 's/^listening on //p' "$MESH_WORK/app.log")
  local token
  token=$(mesh_ctl token create --spiffe-id "$TLS_SERVER_ID" --ttl 5m 2>>"$MESH_WORK/ctl.log") || {
    tail -3 "$MESH_WORK/ctl.log" >&2
    return 1
  }
  mesh_spawn sidecar "$MESH_WORK/sidecar.log" "$MESH_SIDECAR" \
    --ca "127.0.0.1:$MESH_CA_PORT" --ca-bundle "$MESH_WORK/ca/bundle.pem" --join-token "$token" \
    --app "127.0.0.1:$TLS_APP_PORT" --inbound-listen "$TLS_INBOUND" \
    --outbound-listen "127.0.0.1:$MESH_OUT_frontend" --admin-listen "127.0.0.1:$TLS_ADMIN_PORT" \
    --workers 1 --access-log "$MESH_WORK/access.log"
  mesh_wait_for meshguard-sidecar "$MESH_PID_sidecar" "$MESH_WORK/sidecar.log" 60 \
    mesh_http_ok "$TLS_ADMIN_PORT" /readyz
}
