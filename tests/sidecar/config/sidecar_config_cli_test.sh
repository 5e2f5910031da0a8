#!/bin/bash
# meshguard-sidecar refuses a bad config at start, saying where the bad
# value came from: the --config file and line, or the flag that overrode it
# (flags win over the file); a required field missing from both names both.
# A refused start exits 1 at once, before anything is bound or written: it
# logs nothing on stdout and creates no access log.
set -u
bin="$1"
dir="$TEST_TMPDIR"
access_log="$dir/access.log"
source "$TEST_SRCDIR/meshguard/tests/testing/refusal.sh" || exit 1

# expect_refusal NAME EXPECTED_STDERR_LINE ARGS...
expect_refusal() {
  local name="$1" want="$2"
  shift 2
  rm -f "$access_log"
  expect_exit_1 "$name" "meshguard-sidecar: $want" "$bin" "$@"
  [ -e "$access_log" ] && fail "$name: created the access log before refusing"
  return 0
}

# Line numbers matter below: the file's fields are where the errors point.
good="$dir/good.yaml"
cat >"$good" <<EOF
ca:
  ca_bundle_file: /nonexistent-dir/bundle.pem
  join_token: mgjt_never_used
listeners:
  inbound: 127.0.0.1:0
  admin: 127.0.0.1:0
  outbound: 127.0.0.1:0
routes:
  - authority: orders.svc
    upstream: 127.0.0.1:1
access_log:
  path: $access_log
EOF

bad_inbound="$dir/bad_inbound.yaml"
sed 's/^  inbound: .*/  inbound: nope/' "$good" >"$bad_inbound"
expect_refusal file_value \
  "$bad_inbound:5: config field listeners.inbound: \"nope\" is not host:port" \
  --config "$bad_inbound"

# camelCase keys (the JSON names) are found too.
camel="$dir/camel.yaml"
sed -e 's/^  inbound: .*/  inbound: nope/' -e 's/ca_bundle_file/caBundleFile/' \
  "$good" >"$camel"
expect_refusal file_value_camel_case \
  "$camel:5: config field listeners.inbound: \"nope\" is not host:port" \
  --config "$camel"

expect_refusal flag_value \
  "--inbound-listen: \"nope\" is not host:port" \
  --config "$good" --inbound-listen nope

# The flag replaced the file's bad value: the file is not blamed, and the
# next bad field is.
bad_admin="$dir/bad_admin.yaml"
sed -e 's/^  inbound: .*/  inbound: nope/' \
  -e 's/^  admin: .*/  admin: 127.0.0.1:70000/' "$good" >"$bad_admin"
expect_refusal flag_overrides_file \
  "$bad_admin:6: config field listeners.admin: \"127.0.0.1:70000\" has no valid port" \
  --config "$bad_admin" --inbound-listen 127.0.0.1:0

expect_refusal flag_value_without_file \
  "--inbound-listen: \"nope\" is not host:port" \
  --ca-bundle /nonexistent-dir/bundle.pem --join-token mgjt_never_used \
  --access-log "$access_log" --inbound-listen nope

# Routes: the file's come first, --route's after them.
bad_route="$dir/bad_route.yaml"
sed 's/^    upstream: .*/    upstream: orders/' "$good" >"$bad_route"
expect_refusal file_route \
  "$bad_route:10: config field routes[0].upstream: \"orders\" is not host:port" \
  --config "$bad_route"
expect_refusal flag_route \
  "--route \"pay.svc=pay\": config field routes[1].upstream: \"pay\" is not host:port" \
  --config "$good" --route pay.svc=pay

no_bundle="$dir/no_bundle.yaml"
grep -v ca_bundle_file "$good" >"$no_bundle"
expect_refusal missing_from_both \
  "config field ca.ca_bundle_file (in $no_bundle) or --ca-bundle: required: the roots that authenticate the CA" \
  --config "$no_bundle"
expect_refusal missing_without_file \
  "config field ca.ca_bundle_file or --ca-bundle: required: the roots that authenticate the CA" \
  --join-token mgjt_never_used --access-log "$access_log"

finish
