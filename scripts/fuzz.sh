#!/usr/bin/env bash
# Fuzzes the targets in tests/fuzz with libFuzzer (clang-14, ASan + UBSan).
#
#   scripts/fuzz.sh [--seconds N] [--merge] [TARGET ...]
#
#   TARGET      e.g. csr_fuzz h2_forwarder_fuzz; default: every target
#   --seconds   how long to fuzz each target (default 60)
#   --merge     after fuzzing, add to tests/fuzz/corpus/TARGET the inputs
#               of the work corpus that reach code the checked-in corpus
#               does not (libFuzzer -merge=1), for CI to replay; review
#               and commit them
#
# A target's dictionary, tests/fuzz/TARGET.dict if there is one, is passed
# to libFuzzer (-dict).
#
# An input that takes more than 1 GiB of memory (or one allocation over
# 512 MiB) or 30 s counts as a failure too (oom-*, timeout-*).
#
# Each target starts from its checked-in corpus (tests/fuzz/corpus/TARGET,
# only read) plus what earlier runs kept in the work directory
# ($FUZZ_WORK, default /tmp/meshguard-fuzz/TARGET/corpus). A crash, leak,
# sanitizer report or FUZZ_CHECK failure stops that target, leaves its
# input as $FUZZ_WORK/TARGET/crash-* (or leak-*, timeout-*) and makes the
# script exit 1 after the other targets ran. To keep a fixed crash as a
# regression test, copy its input into tests/fuzz/corpus/TARGET/: CI replays
# every file there (`bazel test //tests/fuzz/...`).
#
# Installs clang-14 and libclang-rt-14-dev (libFuzzer, sanitizers) with
# apt-get when missing; builds with `--config=fuzz` in its own Bazel output
# base ($FUZZ_OUTPUT_BASE, default ~/.cache/bazel_ob/fuzz), since the
# compiler differs from the test suite's. Not part of the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

SECONDS_EACH=60
MERGE=0
TARGETS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECONDS_EACH=$2; shift 2 ;;
    --merge) MERGE=1; shift ;;
    -h|--help) sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz: unknown flag $1 (try --help)" >&2; exit 2 ;;
    *) TARGETS+=("$1"); shift ;;
  esac
done
ALL=$(sed -n 's/^ *name = "\([a-z0-9_]*_fuzz\)",$/\1/p' tests/fuzz/BUILD.bazel)
if [ ${#TARGETS[@]} -eq 0 ]; then
  read -r -a TARGETS <<<"$(echo $ALL)"
fi
for t in "${TARGETS[@]}"; do
  if ! grep -qx "$t" <<<"$ALL"; then
    echo "fuzz: no target $t in tests/fuzz (have: $(echo $ALL))" >&2
    exit 2
  fi
done

if ! command -v clang-14 >/dev/null ||
   ! ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
  echo "fuzz: installing clang-14 and libclang-rt-14-dev (Debian packages)" >&2
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get install -y -qq --no-install-recommends clang-14 libclang-rt-14-dev >/dev/null 2>&1 || {
    $SUDO apt-get update -qq >/dev/null
    $SUDO apt-get install -y -qq --no-install-recommends clang-14 libclang-rt-14-dev >/dev/null
  }
fi

OUTPUT_BASE=${FUZZ_OUTPUT_BASE:-$HOME/.cache/bazel_ob/fuzz}
WORK=${FUZZ_WORK:-/tmp/meshguard-fuzz}
BAZEL=(bazel --output_base="$OUTPUT_BASE")
LABELS=()
for t in "${TARGETS[@]}"; do LABELS+=("//tests/fuzz:${t}_fuzzer"); done
echo "fuzz: building ${TARGETS[*]} (--config=fuzz, output base $OUTPUT_BASE)" >&2
mkdir -p "$WORK"
if ! "${BAZEL[@]}" build --config=fuzz "${LABELS[@]}" >"$WORK/build.log" 2>&1; then
  grep -E "error|ERROR" "$WORK/build.log" | head -20 >&2
  echo "fuzz: build failed; log in $WORK/build.log" >&2
  exit 1
fi
BIN=$("${BAZEL[@]}" info --config=fuzz bazel-bin 2>/dev/null)

failed=()
for t in "${TARGETS[@]}"; do
  mkdir -p "$WORK/$t/corpus"
  dict=()
  if [ -f "$ROOT/tests/fuzz/$t.dict" ]; then dict=(-dict="$ROOT/tests/fuzz/$t.dict"); fi
  echo "fuzz: $t for ${SECONDS_EACH}s (work dir $WORK/$t)" >&2
  # detect_leaks: LeakSanitizer is on; the fixtures' process-wide objects
  # are reachable from statics, so they are not reported.
  if ! (cd "$WORK/$t" &&
        ASAN_OPTIONS=abort_on_error=1:detect_leaks=1 \
        UBSAN_OPTIONS=print_stacktrace=1 \
        "$BIN/tests/fuzz/${t}_fuzzer" -max_total_time="$SECONDS_EACH" \
          -rss_limit_mb=1024 -malloc_limit_mb=512 -timeout=30 "${dict[@]}" \
          -print_final_stats=1 -artifact_prefix="$WORK/$t/" \
          "$WORK/$t/corpus" "$ROOT/tests/fuzz/corpus/$t" \
          >"$WORK/$t/fuzz.log" 2>&1); then
    failed+=("$t")
    echo "fuzz: $t FAILED; input and log in $WORK/$t/:" >&2
    grep -E "ERROR|FUZZ_CHECK|SUMMARY|Test unit written" "$WORK/$t/fuzz.log" | head -8 >&2
  else
    grep -E "stat::number_of_executed_units|cov: " "$WORK/$t/fuzz.log" | tail -2 >&2
    if [ "$MERGE" = 1 ]; then
      before=$(find "$ROOT/tests/fuzz/corpus/$t" -type f | wc -l)
      (cd "$WORK/$t" && ASAN_OPTIONS=detect_leaks=0 \
        "$BIN/tests/fuzz/${t}_fuzzer" -merge=1 -rss_limit_mb=1024 \
          "$ROOT/tests/fuzz/corpus/$t" "$WORK/$t/corpus" >"$WORK/$t/merge.log" 2>&1)
      after=$(find "$ROOT/tests/fuzz/corpus/$t" -type f | wc -l)
      echo "fuzz: $t: merged $((after - before)) new inputs into tests/fuzz/corpus/$t" >&2
    fi
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: ${#TARGETS[@]} targets, ${SECONDS_EACH}s each, no failure" >&2
