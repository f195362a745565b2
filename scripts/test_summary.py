#!/usr/bin/env python3
"""Counts test cases across the suite's runs and prints the closing summary line.

Usage: scripts/test_summary.py RESULTS_DIR [RESULTS_DIR ...]
Each RESULTS_DIR holds the GoogleTest XML files one ctest run wrote (GTEST_OUTPUT=xml:DIR/) and
ctest-failed.txt, the names of the binaries ctest saw fail (from Testing/Temporary/LastTestsFailed.log).
A binary that failed without writing XML (a crash, an abort) counts as one failed case, so a crash can
never vanish from the count. Prints per-run lines, the skipped cases with their reasons, then the
last line: "strata: N passed, N failed, N skipped".
"""
import os
import sys
import xml.etree.ElementTree as ET


def count(run_dir):
    passed = failed = skipped = 0
    skips, failures, seen = [], [], set()
    for name in sorted(os.listdir(run_dir)):
        if not name.endswith(".xml"):
            continue
        binary = name[:-4]
        try:
            root = ET.parse(os.path.join(run_dir, name)).getroot()
        except ET.ParseError as e:  # a binary killed while writing its report
            failed += 1
            failures.append(f"{binary}: unreadable XML report ({e})")
            continue
        seen.add(binary)
        for case in root.iter("testcase"):
            label = f"{binary}: {case.get('classname')}.{case.get('name')}"
            if case.find("failure") is not None or case.find("error") is not None:
                failed += 1
                failures.append(label)
            elif case.get("result") == "skipped" or case.find("skipped") is not None:
                skipped += 1
                node = case.find("skipped")
                why = (node.get("message") or node.text or "").strip() if node is not None else ""
                skips.append(f"{label}{': ' + why.splitlines()[-1] if why else ''}")
            elif case.get("status", "run") == "run":
                passed += 1
    failed_list = os.path.join(run_dir, "ctest-failed.txt")
    if os.path.exists(failed_list):
        for line in open(failed_list):
            binary = line.strip().split(":", 1)[-1]
            if binary and binary not in seen:
                failed += 1
                failures.append(f"{binary}: failed without a test report (crash, abort or timeout)")
    return passed, failed, skipped, skips, failures


def main():
    total = [0, 0, 0]
    for run_dir in sys.argv[1:]:
        if not os.path.isdir(run_dir):
            print(f"{run_dir}: no results (the run did not happen)")
            total[1] += 1
            continue
        p, f, s, skips, failures = count(run_dir)
        total = [total[0] + p, total[1] + f, total[2] + s]
        print(f"{run_dir}: {p} passed, {f} failed, {s} skipped")
        for line in skips:
            print(f"  skipped  {line}")
        for line in failures:
            print(f"  FAILED   {line}")
    print(f"strata: {total[0]} passed, {total[1]} failed, {total[2]} skipped")
    return 1 if total[1] else 0


if __name__ == "__main__":
    sys.exit(main())
