#!/usr/bin/env bash
# deploy/iptables/meshguard-iptables.sh on its own:
#   - bad flags and a missing iptables fail with a message (no root needed);
#   - in a network namespace made here (root with CAP_NET_ADMIN): install
#     twice leaves one set of rules, a second install with other flags
#     replaces ours, --cleanup removes exactly our chains and jumps (twice is
#     fine) while an unrelated pre-existing rule and chain survive, and a
#     caller without permission gets a clear error.
# Without CAP_NET_ADMIN the namespace part is reported SKIPPED.
set -uo pipefail
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:${PATH:-}"

TEST_NAME=iptables_script_test
NS="mg-ipt-$$"

# shellcheck source=tests/e2e/junit.sh
source "${TEST_SRCDIR:-$(dirname "$0")/../..}/meshguard/tests/e2e/junit.sh" 2>/dev/null ||
  source "$(dirname "$0")/junit.sh"

NS_MADE=0
cleanup() {
  local rc=$?
  set +e
  if [ "$NS_MADE" = 1 ]; then
    for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    ip netns del "$NS" 2>/dev/null
  fi
  if [ "$rc" != 0 ] && [ "$FAILED" = 0 ]; then fail script "exited with status $rc before finishing"; fi
  write_xml
  [ "$FAILED" = 1 ] && exit 1
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

SCRIPT="${TEST_SRCDIR:-$PWD/..}/meshguard/deploy/iptables/meshguard-iptables.sh"
if [ ! -f "$SCRIPT" ]; then
  SCRIPT="$(cd "$(dirname "$0")/../.." && pwd)/deploy/iptables/meshguard-iptables.sh"
fi
[ -f "$SCRIPT" ] || { fail setup "meshguard-iptables.sh not found"; exit 1; }
run() { bash "$SCRIPT" "$@"; }

# expect_usage_error NAME WANT_IN_MESSAGE ARGS...: exit 2 and the message
expect_error() {
  local name=$1 want_rc=$2 want=$3; shift 3
  local out rc
  out=$("$@" 2>&1 >/dev/null)
  rc=$?
  if [ "$rc" = "$want_rc" ] && [[ $out == *"$want"* ]]; then
    pass "$name"
  else
    fail "$name" "want exit $want_rc and \"$want\" in stderr; got exit $rc: $out"
  fi
}

# ---- flags: no root needed ----------------------------------------------------------
expect_error "unknown flag is refused" 2 "unknown option --bogus" run --bogus
expect_error "stray argument is refused" 2 'unexpected argument "install"' run install
expect_error "flag without value is refused" 2 "--inbound-port needs a value" run --inbound-port
expect_error "non-numeric port is refused" 2 '--inbound-ports: "80x" is not a port' run --inbound-ports 8080,80x
expect_error "port out of range is refused" 2 '"70000" is not a port' run --outbound-port=70000
expect_error "bad CIDR is refused" 2 '"10.0.0/8" is not an IPv4 address or CIDR' run --exclude-outbound-cidrs 10.0.0/8
expect_error "prefix over 32 is refused" 2 "prefix length over 32" run --exclude-outbound-cidrs 10.0.0.0/33
expect_error "proxy uid 0 is refused" 2 "must not run as root" run --proxy-uid 0
expect_error "non-numeric proxy uid is refused" 2 "not a numeric uid" run --proxy-uid meshguard
expect_error "same inbound and outbound port is refused" 2 "are both 15001" run --inbound-port 15001
expect_error "missing iptables is a clear error" 3 "not found: install Debian's iptables package" \
  env IPTABLES=/nonexistent/iptables bash "$SCRIPT" --inbound-ports 8080
help=$(run --help 2>&1); rc=$?
if [ "$rc" = 0 ] && [[ $help == *"--exclude-outbound-cidrs"* ]] && [[ $help == *"--cleanup"* ]]; then
  pass "--help lists the flags"
else
  fail "--help lists the flags" "exit $rc: $help"
fi
dry=$(run --dry-run --inbound-ports 8080 2>&1); rc=$?
if [ "$rc" = 0 ] && [[ $dry == *"-A MESHGUARD_INBOUND -p tcp --dport 8080 -j MESHGUARD_IN_REDIRECT"* ]]; then
  pass "--dry-run prints the commands"
else
  fail "--dry-run prints the commands" "exit $rc: $dry"
fi

# ---- in a network namespace of our own ---------------------------------------------------
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null || ! command -v iptables-save >/dev/null; then
  skip "rules in a network namespace" "needs root, ip and iptables (running as uid $(id -u))"
  exit 0
fi
if ! err=$(ip netns add "$NS" 2>&1); then
  skip "rules in a network namespace" "cannot create a network namespace (no CAP_NET_ADMIN?): $err"
  exit 0
fi
NS_MADE=1
in_ns() { ip netns exec "$NS" "$@"; }
# The nat table without comments and counters.
nat() { in_ns iptables-save -t nat | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//'; }

# Someone else's rules, there before us.
if ! in_ns iptables -w -t nat -A OUTPUT -p tcp --dport 9999 -j ACCEPT ||
   ! in_ns iptables -w -t nat -N OTHER_CHAIN ||
   ! in_ns iptables -w -t nat -A OTHER_CHAIN -p tcp --dport 7777 -j RETURN ||
   ! in_ns iptables -w -t nat -A PREROUTING -p tcp -j OTHER_CHAIN; then
  fail setup "could not add the unrelated rules: $(nat 2>&1)"
  exit 1
fi
before=$(nat)

FLAGS=(--proxy-uid 1337 --inbound-ports '*' --exclude-inbound-ports 15020,15090
       --exclude-outbound-ports 53 --exclude-outbound-cidrs 169.254.169.254/32,10.96.0.0/12)
out1=$(in_ns bash "$SCRIPT" "${FLAGS[@]}" 2>&1); rc1=$?
first=$(nat)
out2=$(in_ns bash "$SCRIPT" "${FLAGS[@]}" 2>&1); rc2=$?
second=$(nat)
if [ "$rc1" = 0 ] && [ "$rc2" = 0 ]; then
  pass "install succeeds twice"
else
  fail "install succeeds twice" "exit $rc1: $out1 / exit $rc2: $out2"
fi
if [ "$first" = "$second" ]; then
  pass "a second install leaves the same nat table"
else
  fail "a second install leaves the same nat table" "$(diff <(echo "$first") <(echo "$second"))"
fi
echo "----- nat table after install (twice):"
echo "$second"

# Each rule exactly once.
expect_once() {  # RULE
  local n
  n=$(grep -cxF -- "$1" <<<"$second")
  if [ "$n" = 1 ]; then pass "once: $1"; else fail "once: $1" "found $n times"; fi
}
for rule in \
  "-A PREROUTING -p tcp -j MESHGUARD_INBOUND" \
  "-A OUTPUT -p tcp -j MESHGUARD_OUTPUT" \
  "-A MESHGUARD_INBOUND -p tcp -m tcp --dport 15000 -j RETURN" \
  "-A MESHGUARD_INBOUND -p tcp -m tcp --dport 15020 -j RETURN" \
  "-A MESHGUARD_INBOUND -p tcp -m tcp --dport 15090 -j RETURN" \
  "-A MESHGUARD_INBOUND -p tcp -j MESHGUARD_IN_REDIRECT" \
  "-A MESHGUARD_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006" \
  "-A MESHGUARD_OUTPUT -m owner --uid-owner 1337 -j RETURN" \
  "-A MESHGUARD_OUTPUT -o lo -j RETURN" \
  "-A MESHGUARD_OUTPUT -d 169.254.169.254/32 -j RETURN" \
  "-A MESHGUARD_OUTPUT -d 10.96.0.0/12 -j RETURN" \
  "-A MESHGUARD_OUTPUT -p tcp -m tcp --dport 53 -j RETURN" \
  "-A MESHGUARD_OUTPUT -p tcp -j MESHGUARD_REDIRECT" \
  "-A MESHGUARD_REDIRECT -p tcp -j REDIRECT --to-ports 15001"; do
  expect_once "$rule"
done
n=$(grep -c -- '-j MESHGUARD_' <<<"$second")
# 2 jumps + 1 inbound->IN_REDIRECT + 1 output->REDIRECT
if [ "$n" = 4 ]; then pass "four jumps to our chains in all"; else fail "four jumps to our chains in all" "found $n"; fi
# Exclusions come before the redirects.
order=$(grep -- '^-A MESHGUARD_OUTPUT' <<<"$second" | tail -1)
if [ "$order" = "-A MESHGUARD_OUTPUT -p tcp -j MESHGUARD_REDIRECT" ]; then
  pass "the outbound redirect is the last rule of MESHGUARD_OUTPUT"
else
  fail "the outbound redirect is the last rule of MESHGUARD_OUTPUT" "last is: $order"
fi
order=$(grep -- '^-A MESHGUARD_OUTPUT' <<<"$second" | head -1)
if [ "$order" = "-A MESHGUARD_OUTPUT -m owner --uid-owner 1337 -j RETURN" ]; then
  pass "the proxy uid RETURN is the first rule of MESHGUARD_OUTPUT"
else
  fail "the proxy uid RETURN is the first rule of MESHGUARD_OUTPUT" "first is: $order"
fi
for rule in "-A OUTPUT -p tcp -m tcp --dport 9999 -j ACCEPT" \
            "-A PREROUTING -p tcp -j OTHER_CHAIN" \
            "-A OTHER_CHAIN -p tcp -m tcp --dport 7777 -j RETURN"; do
  if grep -qxF -- "$rule" <<<"$second"; then pass "install keeps: $rule"; else fail "install keeps: $rule" "gone"; fi
done

# A new install with other flags replaces ours, it does not add to them.
in_ns bash "$SCRIPT" --inbound-ports 8080,9090 --proxy-uid 2102 >/dev/null 2>&1
third=$(nat)
if grep -qxF -- "-A MESHGUARD_INBOUND -p tcp -m tcp --dport 8080 -j MESHGUARD_IN_REDIRECT" <<<"$third" &&
   grep -qxF -- "-A MESHGUARD_OUTPUT -m owner --uid-owner 2102 -j RETURN" <<<"$third" &&
   ! grep -q -- "--uid-owner 1337" <<<"$third" &&
   ! grep -q -- "10.96.0.0/12" <<<"$third" &&
   [ "$(grep -c -- '-j MESHGUARD_INBOUND' <<<"$third")" = 1 ]; then
  pass "reinstall with other flags replaces our rules"
else
  fail "reinstall with other flags replaces our rules" "$third"
fi

# No permission: a clear error, nothing changed.
# (A copy the unprivileged uid can read: runfiles live under /root.)
if command -v setpriv >/dev/null && COPY=$(mktemp /tmp/mg-ipt-script.XXXXXX); then
  cp "$SCRIPT" "$COPY" && chmod 755 "$COPY"
  expect_error "no permission is a clear error" 3 "permission denied" \
    in_ns setpriv --reuid=65534 --regid=65534 --clear-groups bash "$COPY" --inbound-ports 8080
  rm -f "$COPY"
  if [ "$(nat)" = "$third" ]; then
    pass "a refused install changes nothing"
  else
    fail "a refused install changes nothing" "$(diff <(echo "$third") <(nat))"
  fi
fi

# Cleanup: exactly ours gone, theirs untouched; twice is fine.
out=$(in_ns bash "$SCRIPT" --cleanup 2>&1); rc=$?
after=$(nat)
if [ "$rc" = 0 ] && ! grep -q MESHGUARD <<<"$after"; then
  pass "--cleanup removes every meshguard chain and jump"
else
  fail "--cleanup removes every meshguard chain and jump" "exit $rc: $out; $after"
fi
if [ "$after" = "$before" ]; then
  pass "--cleanup restores the table as it was (unrelated rules and chain kept)"
else
  fail "--cleanup restores the table as it was (unrelated rules and chain kept)" \
    "$(diff <(echo "$before") <(echo "$after"))"
fi
out=$(in_ns bash "$SCRIPT" --cleanup 2>&1); rc=$?
if [ "$rc" = 0 ] && [ "$(nat)" = "$before" ]; then
  pass "--cleanup twice is fine"
else
  fail "--cleanup twice is fine" "exit $rc: $out"
fi

exit "$FAILED"
