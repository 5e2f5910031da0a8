# Shared by the tests that start a binary with a bad configuration and
# expect it to refuse at once. Source it, then call `expect_exit_1` and
# finally `finish`.
#
# expect_exit_1 NAME WANT_STDERR CMD...: CMD must exit 1 within 20 s, with
# exactly WANT_STDERR on stderr and nothing on stdout. Failures are counted
# (`fail`), not fatal, so one run reports every wrong message.
failures=0
refusal_dir="$TEST_TMPDIR"

fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

expect_exit_1() {
  local name="$1" want="$2"
  shift 2
  local out="$refusal_dir/$name.out" err="$refusal_dir/$name.err" code=0
  timeout 20 "$@" >"$out" 2>"$err" || code=$?
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
  return 0
}

finish() {
  if [ "$failures" -ne 0 ]; then
    echo "$failures check(s) failed"
    exit 1
  fi
  echo "PASS"
}
