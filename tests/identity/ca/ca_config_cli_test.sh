#!/bin/bash
# `meshguard-ca serve` refuses a bad config at start, saying where the bad
# value came from: the --config file and line, or the flag that overrode it;
# a required field missing from both names both. A refused start exits 1 at
# once, before anything is bound or written: it logs nothing on stdout and
# does not create the data dir (its lock, its database).
set -u
bin="$1"
dir="${TEST_TMPDIR:-$(mktemp -d)}"
data="$dir/data"
failures=0

fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

# expect_refusal NAME EXPECTED_STDERR_LINE ARGS...
expect_refusal() {
  local name="$1" want="meshguard-ca: serve: $2"
  shift 2
  local out="$dir/$name.out" err="$dir/$name.err" code=0
  timeout 20 "$bin" serve "$@" >"$out" 2>"$err" || code=$?
  if [ "$code" -eq 124 ]; then
    fail "$name: still running after 20 s; it must refuse the config at once"
    return
  fi
  [ "$code" -eq 1 ] || fail "$name: exit code $code, want 1"
  local got
  got=$(cat "$err")
  [ "$got" = "$want" ] || fail "$name: stderr
  got:  $got
  want: $want"
  [ -s "$out" ] && fail "$name: logged on stdout before refusing: $(head -3 "$out")"
  [ -e "$data" ] && fail "$name: created $data before refusing"
  return 0
}

# Line numbers matter below: the file's fields are where the errors point.
ttls="$dir/ttls.yaml"
cat >"$ttls" <<YAML
trust_domain: cluster.local
default_ttl: 7200s
max_ttl: 3600s
YAML
expect_refusal file_value \
  "$ttls:3: config field max_ttl: must be at least default_ttl" \
  --config "$ttls" --data-dir "$data"

# Only default_ttl is in the file, above the default max_ttl: it is the
# one to fix.
default_ttl="$dir/default_ttl.yaml"
printf 'trust_domain: cluster.local\ndefault_ttl: 172800s\n' >"$default_ttl"
expect_refusal file_value_over_a_default \
  "$default_ttl:2: config field default_ttl: must not exceed max_ttl (24h)" \
  --config "$default_ttl" --data-dir "$data"

admin_ids="$dir/admin_ids.yaml"
printf 'admin_ids:\n  - not-a-spiffe-id\n' >"$admin_ids"
expect_refusal file_list \
  "$admin_ids:1: config field admin_ids: invalid SPIFFE ID \"not-a-spiffe-id\": scheme is not spiffe://" \
  --config "$admin_ids" --data-dir "$data"

good="$dir/good.yaml"
head -1 "$ttls" >"$good"
expect_refusal flag_value \
  "--trust-domain: trust domain \"Bad:TD\" has uppercase letters" \
  --config "$good" --data-dir "$data" --trust-domain Bad:TD

expect_refusal missing_from_both \
  "config field data_dir (in $good) or --data-dir: required" \
  --config "$good"

if [ "$failures" -ne 0 ]; then
  echo "$failures check(s) failed"
  exit 1
fi
echo "PASS"
