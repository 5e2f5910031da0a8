#!/usr/bin/env bash
# meshguard-iptables: the pod's init step for transparent interception.
#
# Installs, in the nat table of the current network namespace, REDIRECT rules
# that send the app's outbound TCP to the sidecar's outbound listener and
# inbound TCP for the app's port(s) to the sidecar's inbound listener (as
# istio-init / linkerd proxy-init do). The sidecar's own uid is excluded, so
# the connections it makes are not caught again.
#
# Everything lives in four chains of our own; the only rules put into other
# chains are the two jumps to them:
#   PREROUTING -p tcp -j MESHGUARD_INBOUND     (peers' connections)
#   OUTPUT     -p tcp -j MESHGUARD_OUTPUT      (this pod's connections)
#   MESHGUARD_IN_REDIRECT -> REDIRECT --to-ports INBOUND_PORT  (15006)
#   MESHGUARD_REDIRECT    -> REDIRECT --to-ports OUTBOUND_PORT (15001)
#
# Usage:
#   meshguard-iptables.sh [options]            install (again: replaces ours)
#   meshguard-iptables.sh --cleanup            remove our chains and jumps
#
# Options (each also read from the environment variable shown):
#   --proxy-uid UID              MESHGUARD_PROXY_UID       sidecar's uid, never redirected (1337)
#   --proxy-gid GID              MESHGUARD_PROXY_GID       also exclude this gid (unset: uid only)
#   --inbound-ports LIST|'*'     MESHGUARD_INBOUND_PORTS   app ports to intercept inbound (*)
#   --exclude-inbound-ports LIST MESHGUARD_EXCLUDE_INBOUND_PORTS  never intercepted inbound ('')
#   --admin-port PORT            MESHGUARD_ADMIN_PORT      sidecar admin/probe port, always
#                                                          excluded inbound (15000)
#   --exclude-outbound-ports LIST  MESHGUARD_EXCLUDE_OUTBOUND_PORTS  destination ports left alone ('')
#   --exclude-outbound-cidrs LIST  MESHGUARD_EXCLUDE_OUTBOUND_CIDRS  destination CIDRs left alone ('')
#   --outbound-port PORT         MESHGUARD_OUTBOUND_PORT   sidecar outbound listener (15001)
#   --inbound-port PORT          MESHGUARD_INBOUND_PORT    sidecar inbound listener (15006)
#   --cleanup                    remove exactly what install adds; idempotent
#   --dry-run                    print the iptables commands instead of running them
#   -h, --help                   this text
# LIST is comma-separated (8080,9090). IPv4 only. Needs CAP_NET_ADMIN in the
# pod's network namespace; IPTABLES names the binary (default: iptables).
#
# Exit status: 0 done, 2 bad usage, 3 iptables missing or not permitted,
# 1 an iptables command failed.
set -euo pipefail

PROG=meshguard-iptables
readonly CHAIN_IN=MESHGUARD_INBOUND
readonly CHAIN_OUT=MESHGUARD_OUTPUT
readonly CHAIN_REDIRECT=MESHGUARD_REDIRECT
readonly CHAIN_IN_REDIRECT=MESHGUARD_IN_REDIRECT
readonly OUR_CHAINS=("$CHAIN_IN" "$CHAIN_OUT" "$CHAIN_REDIRECT" "$CHAIN_IN_REDIRECT")

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
die_usage() { echo "$PROG: $*" >&2; echo "$PROG: try --help" >&2; exit 2; }
die() { echo "$PROG: $*" >&2; exit "${2:-1}"; }

PROXY_UID=${MESHGUARD_PROXY_UID:-1337}
PROXY_GID=${MESHGUARD_PROXY_GID:-}
INBOUND_PORTS=${MESHGUARD_INBOUND_PORTS:-*}
EXCLUDE_INBOUND_PORTS=${MESHGUARD_EXCLUDE_INBOUND_PORTS:-}
ADMIN_PORT=${MESHGUARD_ADMIN_PORT:-15000}
EXCLUDE_OUTBOUND_PORTS=${MESHGUARD_EXCLUDE_OUTBOUND_PORTS:-}
EXCLUDE_OUTBOUND_CIDRS=${MESHGUARD_EXCLUDE_OUTBOUND_CIDRS:-}
OUTBOUND_PORT=${MESHGUARD_OUTBOUND_PORT:-15001}
INBOUND_PORT=${MESHGUARD_INBOUND_PORT:-15006}
IPTABLES=${IPTABLES:-iptables}
MODE=install
DRY_RUN=0

while [ $# -gt 0 ]; do
  opt=$1
  case "$opt" in
    -h|--help) usage; exit 0 ;;
    --cleanup) MODE=cleanup; shift; continue ;;
    --dry-run) DRY_RUN=1; shift; continue ;;
  esac
  # --flag=value and --flag value
  case "$opt" in
    --*=*) value=${opt#*=}; opt=${opt%%=*}; shift ;;
    --*)
      case "$opt" in
        --proxy-uid|--proxy-gid|--inbound-ports|--exclude-inbound-ports|--admin-port|\
        --exclude-outbound-ports|--exclude-outbound-cidrs|--outbound-port|--inbound-port)
          [ $# -ge 2 ] || die_usage "$opt needs a value"
          value=$2; shift 2 ;;
        *) die_usage "unknown option $opt" ;;
      esac ;;
    *) die_usage "unexpected argument \"$opt\"" ;;
  esac
  case "$opt" in
    --proxy-uid) PROXY_UID=$value ;;
    --proxy-gid) PROXY_GID=$value ;;
    --inbound-ports) INBOUND_PORTS=$value ;;
    --exclude-inbound-ports) EXCLUDE_INBOUND_PORTS=$value ;;
    --admin-port) ADMIN_PORT=$value ;;
    --exclude-outbound-ports) EXCLUDE_OUTBOUND_PORTS=$value ;;
    --exclude-outbound-cidrs) EXCLUDE_OUTBOUND_CIDRS=$value ;;
    --outbound-port) OUTBOUND_PORT=$value ;;
    --inbound-port) INBOUND_PORT=$value ;;
    *) die_usage "unknown option $opt" ;;
  esac
done

# ---- validation ------------------------------------------------------------

is_uint() { [[ $1 =~ ^[0-9]+$ ]] && [ ${#1} -le 10 ]; }
check_port() {  # NAME VALUE
  is_uint "$2" && [ "$2" -ge 1 ] && [ "$2" -le 65535 ] ||
    die_usage "$1: \"$2\" is not a port (1-65535)"
}
# Splits a comma list into the named array, dropping empty items.
split_list() {  # VAR LIST
  local -n out=$1
  local item
  out=()
  IFS=',' read -ra _items <<<"$2"
  for item in "${_items[@]}"; do
    item=${item//[[:space:]]/}
    [ -n "$item" ] && out+=("$item")
  done
  return 0
}
check_port_list() {  # NAME VAR
  local -n list=$2
  local p
  for p in "${list[@]}"; do check_port "$1" "$p"; done
}
check_cidr() {  # NAME VALUE
  local re='^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})(/([0-9]{1,2}))?$'
  [[ $2 =~ $re ]] || die_usage "$1: \"$2\" is not an IPv4 address or CIDR (10.0.0.0/8)"
  local i
  for i in 1 2 3 4; do
    [ "${BASH_REMATCH[$i]}" -le 255 ] || die_usage "$1: \"$2\": octet over 255"
  done
  if [ -n "${BASH_REMATCH[6]}" ] && [ "${BASH_REMATCH[6]}" -gt 32 ]; then
    die_usage "$1: \"$2\": prefix length over 32"
  fi
}

if [ "$MODE" = install ]; then
  is_uint "$PROXY_UID" || die_usage "--proxy-uid: \"$PROXY_UID\" is not a numeric uid"
  [ "$PROXY_UID" -ne 0 ] ||
    die_usage "--proxy-uid 0: the sidecar must not run as root (root's traffic would bypass the mesh)"
  if [ -n "$PROXY_GID" ]; then
    is_uint "$PROXY_GID" || die_usage "--proxy-gid: \"$PROXY_GID\" is not a numeric gid"
  fi
  check_port --outbound-port "$OUTBOUND_PORT"
  check_port --inbound-port "$INBOUND_PORT"
  check_port --admin-port "$ADMIN_PORT"
  [ "$OUTBOUND_PORT" != "$INBOUND_PORT" ] ||
    die_usage "--outbound-port and --inbound-port are both $INBOUND_PORT"
  INBOUND_ALL=0
  IN_PORTS=()
  if [ "$INBOUND_PORTS" = '*' ]; then
    INBOUND_ALL=1
  else
    split_list IN_PORTS "$INBOUND_PORTS"
    check_port_list --inbound-ports IN_PORTS
  fi
  split_list EX_IN_PORTS "$EXCLUDE_INBOUND_PORTS"
  check_port_list --exclude-inbound-ports EX_IN_PORTS
  split_list EX_OUT_PORTS "$EXCLUDE_OUTBOUND_PORTS"
  check_port_list --exclude-outbound-ports EX_OUT_PORTS
  split_list EX_OUT_CIDRS "$EXCLUDE_OUTBOUND_CIDRS"
  for c in "${EX_OUT_CIDRS[@]}"; do check_cidr --exclude-outbound-cidrs "$c"; done
fi

# ---- iptables ----------------------------------------------------------------

ipt() {  # runs iptables -w -t nat ARGS...
  if [ "$DRY_RUN" = 1 ]; then
    echo "$IPTABLES -t nat $*"
    return 0
  fi
  local out
  if ! out=$("$IPTABLES" -w -t nat "$@" 2>&1); then
    local hint=""
    [ "$MODE" = install ] && hint=" (--cleanup removes a partial install)"
    die "failed: $IPTABLES -t nat $*: $out$hint"
  fi
}
ipt_quiet() { "$IPTABLES" -w -t nat "$@" >/dev/null 2>&1; }

check_iptables() {
  [ "$DRY_RUN" = 1 ] && return 0
  command -v "$IPTABLES" >/dev/null 2>&1 ||
    die "$IPTABLES not found: install Debian's iptables package (apt-get install iptables)" 3
  local err
  if ! err=$("$IPTABLES" -w -t nat -S 2>&1 >/dev/null); then
    case "$err" in
      *ermission*|*"must be root"*|*"not permitted"*)
        die "$IPTABLES cannot read the nat table: permission denied. Run as root or with CAP_NET_ADMIN (and CAP_NET_RAW) in the pod's network namespace. ($err)" 3 ;;
      *)
        die "$IPTABLES -t nat -S failed: $err" 3 ;;
    esac
  fi
}

chain_exists() { ipt_quiet -S "$1"; }

# Deletes every rule of PREROUTING and OUTPUT that jumps to one of our
# chains (whatever its match, so an older install's jumps go too).
delete_jumps() {
  local chain line
  for chain in PREROUTING OUTPUT; do
    # -S prints "-A CHAIN ..."; the same words after -D delete that rule.
    while IFS= read -r line; do
      [ -n "$line" ] || continue
      read -ra words <<<"$line"
      words[0]=-D
      ipt "${words[@]}"
    done < <("$IPTABLES" -w -t nat -S "$chain" 2>/dev/null |
               grep -E -- "-j MESHGUARD_(INBOUND|OUTPUT|REDIRECT|IN_REDIRECT)( |$)" || true)
  done
}

cleanup() {
  delete_jumps
  local c
  # Flush all first: our chains jump to each other.
  for c in "${OUR_CHAINS[@]}"; do
    if chain_exists "$c"; then ipt -F "$c"; fi
  done
  for c in "${OUR_CHAINS[@]}"; do
    if chain_exists "$c"; then ipt -X "$c"; fi
  done
}

# Creates our chain or, if it exists, empties it.
fresh_chain() {
  if chain_exists "$1"; then ipt -F "$1"; else ipt -N "$1"; fi
}

install() {
  delete_jumps
  local c p
  for c in "${OUR_CHAINS[@]}"; do fresh_chain "$c"; done

  # Targets.
  ipt -A "$CHAIN_REDIRECT" -p tcp -j REDIRECT --to-ports "$OUTBOUND_PORT"
  ipt -A "$CHAIN_IN_REDIRECT" -p tcp -j REDIRECT --to-ports "$INBOUND_PORT"

  # Inbound: peers' connections to this pod (nat PREROUTING; connections
  # made inside the pod never pass here).
  ipt -A "$CHAIN_IN" -p tcp --dport "$ADMIN_PORT" -j RETURN
  for p in "${EX_IN_PORTS[@]}"; do
    ipt -A "$CHAIN_IN" -p tcp --dport "$p" -j RETURN
  done
  if [ "$INBOUND_ALL" = 1 ]; then
    ipt -A "$CHAIN_IN" -p tcp -j "$CHAIN_IN_REDIRECT"
  else
    for p in "${IN_PORTS[@]}"; do
      ipt -A "$CHAIN_IN" -p tcp --dport "$p" -j "$CHAIN_IN_REDIRECT"
    done
  fi

  # Outbound: connections made in this pod (nat OUTPUT).
  # The sidecar's own connections (to peers, to the CA, to the app) go out
  # as they are.
  ipt -A "$CHAIN_OUT" -m owner --uid-owner "$PROXY_UID" -j RETURN
  if [ -n "$PROXY_GID" ]; then
    ipt -A "$CHAIN_OUT" -m owner --gid-owner "$PROXY_GID" -j RETURN
  fi
  # Loopback never leaves the pod: 127.0.0.0/8 (the app calling the
  # sidecar's listeners or a local helper) and the pod calling its own IP
  # (routed via lo too) go out as they are.
  ipt -A "$CHAIN_OUT" -o lo -j RETURN
  for c in "${EX_OUT_CIDRS[@]}"; do
    ipt -A "$CHAIN_OUT" -d "$c" -j RETURN
  done
  for p in "${EX_OUT_PORTS[@]}"; do
    ipt -A "$CHAIN_OUT" -p tcp --dport "$p" -j RETURN
  done
  ipt -A "$CHAIN_OUT" -p tcp -j "$CHAIN_REDIRECT"

  # The jumps, last, so no connection sees half a rule set.
  ipt -A PREROUTING -p tcp -j "$CHAIN_IN"
  ipt -A OUTPUT -p tcp -j "$CHAIN_OUT"
}

# ipt() exits with a message on the first failing command.
check_iptables
if [ "$MODE" = cleanup ]; then
  cleanup
  [ "$DRY_RUN" = 1 ] || echo "$PROG: removed the meshguard chains and jumps" >&2
else
  install
  [ "$DRY_RUN" = 1 ] || echo "$PROG: installed: outbound TCP -> :$OUTBOUND_PORT, inbound ${INBOUND_PORTS} -> :$INBOUND_PORT, uid $PROXY_UID excluded" >&2
fi
