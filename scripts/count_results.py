#!/usr/bin/env python3
"""Counts test cases in Bazel's test.xml files and prints "N passed, M failed".

Only the test targets listed in TARGETS_FILE (the ones this run built) count,
so stale results of deleted targets are never read.

Exits non-zero when anything failed or nothing ran. A test target whose
test.xml is missing (it crashed or timed out before writing one) counts as one
failure.
"""
import os
import sys
import xml.etree.ElementTree as ET


def main() -> int:
    if len(sys.argv) != 3 or not os.path.isdir(sys.argv[1]):
        print("0 passed, 1 failed")
        print("usage: count_results.py BAZEL_TESTLOGS TARGETS_FILE", file=sys.stderr)
        return 1
    testlogs = sys.argv[1]
    with open(sys.argv[2]) as f:
        labels = [l.strip() for l in f if l.strip().startswith("//")]
    passed = failed = skipped = 0
    for label in labels:
        pkg, _, name = label[2:].partition(":")
        path = os.path.join(testlogs, pkg, name, "test.xml")
        if not os.path.exists(path):
            print(f"count_results: no result for {label}", file=sys.stderr)
            failed += 1
            continue
        try:
            tree = ET.parse(path)
        except ET.ParseError:
            failed += 1
            continue
        cases = list(tree.iter("testcase"))
        if not cases:
            failed += 1
            continue
        for case in cases:
            if case.find("failure") is not None or case.find("error") is not None:
                failed += 1
            elif case.find("skipped") is not None or case.get("result") == "skipped":
                skipped += 1
            else:
                passed += 1
    line = f"{passed} passed, {failed} failed"
    if skipped:
        line += f", {skipped} skipped"
    print(line)
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
