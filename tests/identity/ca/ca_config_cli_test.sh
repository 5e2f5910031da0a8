#!/bin/bash
# `meshguard-ca serve` refuses a bad config at start, saying where the bad
# value came from: the --config file and line, or the flag that overrode it;
# a required field missing from both names both. A refused start exits 1 at
# once, before anything is bound or written: it logs nothing on stdout and
# does not create the data dir (its lock, its database).
set -u
bin="$1"
dir="$TEST_TMPDIR"
data="$dir/data"
source "$TEST_SRCDIR/meshguard/tests/testing/refusal.sh" || exit 1

# expect_refusal NAME EXPECTED_STDERR_LINE ARGS...
expect_refusal() {
  local name="$1" want="$2"
  shift 2
  expect_exit_1 "$name" "meshguard-ca: serve: $want" "$bin" serve "$@"
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

finish
