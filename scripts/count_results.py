#!/usr/bin/env python3
"""Prints "N passed, M failed" for one `bazel test` run.

Usage: count_results.py BAZEL_TESTLOGS TARGETS_FILE BEP_JSON_FILE

TARGETS_FILE lists the test targets that should have run (bazel query);
BEP_JSON_FILE is this run's --build_event_json_file. A target counts only
through a TestResult event of this run, so results left in bazel-testlogs by
an earlier run are never read for a target that did not run now. For each
target that ran, its test cases come from its test.xml; a target that failed
to build, crashed before writing test.xml, or has no TestResult counts as one
failure. Exits non-zero when anything failed or nothing passed.
"""
import json
import os
import sys
import xml.etree.ElementTree as ET


def results_of_this_run(bep_path):
    status = {}
    with open(bep_path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            label = event.get("id", {}).get("testResult", {}).get("label")
            if label and "testResult" in event:
                s = event["testResult"].get("status", "FAILED")
                # Several attempts or shards: any failure wins.
                if status.get(label) not in (None, "PASSED"):
                    continue
                status[label] = s
    return status


def count_xml(path):
    """(passed, failed, skipped) test cases in one test.xml, or None."""
    try:
        tree = ET.parse(path)
    except (ET.ParseError, OSError):
        return None
    cases = list(tree.iter("testcase"))
    if not cases:
        return None
    passed = failed = skipped = 0
    for case in cases:
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
        elif case.find("skipped") is not None or case.get("result") == "skipped":
            skipped += 1
        else:
            passed += 1
    return passed, failed, skipped


def main() -> int:
    if len(sys.argv) != 4:
        print("0 passed, 1 failed")
        print(__doc__, file=sys.stderr)
        return 1
    testlogs, targets_file, bep_file = sys.argv[1:]
    with open(targets_file) as f:
        labels = [l.strip() for l in f if l.strip().startswith("//")]
    ran = results_of_this_run(bep_file) if os.path.exists(bep_file) else {}
    passed = failed = skipped = 0
    for label in labels:
        status = ran.get(label)
        if status is None:
            print(f"count_results: {label} did not run (build failure?)",
                  file=sys.stderr)
            failed += 1
            continue
        pkg, _, name = label[2:].partition(":")
        counts = count_xml(os.path.join(testlogs, pkg, name, "test.xml"))
        if counts is None:
            print(f"count_results: no test cases for {label} ({status})",
                  file=sys.stderr)
            failed += 1
            continue
        p, fl, sk = counts
        if status != "PASSED" and fl == 0:
            fl = 1  # e.g. a crash or timeout after the XML was written
        passed += p
        failed += fl
        skipped += sk
    # The last line is exactly "N passed, M failed" (what CI reads); skipped
    # cases (a check that cannot run here, e.g. without CAP_NET_ADMIN) are
    # reported on the line before.
    if skipped:
        print(f"{skipped} skipped (not counted as passed or failed)")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
