#!/usr/bin/env bash
# The README's test command: installs the Debian packages, runs the whole
# suite with Bazel, and ends with one line "N passed, M failed" counted from
# the test results (test cases inside each test binary, from test.xml).
set -uo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh || exit 1

jobs_flag=()
if [ -n "${MESHGUARD_TEST_JOBS:-}" ]; then jobs_flag=(--jobs="$MESHGUARD_TEST_JOBS"); fi

bep=$(mktemp)
bazel test //... "${jobs_flag[@]}" --build_event_json_file="$bep" "$@"
rc=$?

targets=$(mktemp)
bazel query 'tests(//...) except attr(tags, "manual", //...)' >"$targets" 2>/dev/null
python3 scripts/count_results.py "$(bazel info bazel-testlogs 2>/dev/null)" "$targets" "$bep"
count_rc=$?
rm -f "$targets" "$bep"
# Bazel's exit code 4 means "built, but no tests": that is a failure here.
if [ $rc -ne 0 ] || [ $count_rc -ne 0 ]; then exit 1; fi
exit 0
