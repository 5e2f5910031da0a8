# Sourced by the e2e shell tests: record each check and write them as JUnit
# XML to $XML_OUTPUT_FILE, which scripts/count_results.py reads, so a test
# with many checks counts each one (and a skipped one as skipped).
# The sourcing script sets TEST_NAME first (and JUNIT_CLASS_PREFIX, the
# suite's name in the report, when it is not an e2e test).

CASES=()  # "status<TAB>name<TAB>message", status: pass|fail|skip
FAILED=0
xml_escape() {
  local s=$1
  # Quoted replacements: in bash 5.2 an unquoted & in one stands for the match.
  s=${s//&/"&amp;"}; s=${s//</"&lt;"}; s=${s//>/"&gt;"}; s=${s//\"/"&quot;"}
  printf '%s' "$s" | tr -d '\000-\010\013\014\016-\037'
}
record() { CASES+=("$1"$'\t'"$2"$'\t'"${3:-}"); }
pass() { record pass "$1"; echo "PASS: $1"; }
fail() { record fail "$1" "$2"; FAILED=1; echo "FAIL: $1: $2" >&2; }
skip() { record skip "$1" "$2"; echo "SKIPPED: $1: $2" >&2; }
write_xml() {
  [ -n "${XML_OUTPUT_FILE:-}" ] || return 0
  local n=0 f=0 s=0 entry status name msg body=""
  for entry in "${CASES[@]}"; do
    IFS=$'\t' read -r status name msg <<<"$entry"
    n=$((n + 1))
    body+="    <testcase classname=\"${JUNIT_CLASS_PREFIX:-e2e}.$TEST_NAME\" name=\"$(xml_escape "$name")\">"
    case "$status" in
      fail) f=$((f + 1)); body+="<failure message=\"$(xml_escape "$msg")\"/>" ;;
      skip) s=$((s + 1)); body+="<skipped message=\"$(xml_escape "$msg")\"/>" ;;
    esac
    body+="</testcase>"$'\n'
  done
  {
    echo '<?xml version="1.0" encoding="UTF-8"?>'
    echo "<testsuites tests=\"$n\" failures=\"$f\" skipped=\"$s\">"
    echo "  <testsuite name=\"$TEST_NAME\" tests=\"$n\" failures=\"$f\" skipped=\"$s\" errors=\"0\">"
    printf '%s' "$body"
    echo "  </testsuite>"
    echo "</testsuites>"
  } >"$XML_OUTPUT_FILE"
}
