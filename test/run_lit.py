#!/usr/bin/env python3
"""ctest's `lit` test: runs the lit suite, then ends its output with what a
reader of a truncated CI log needs.

lit prints a failing test's whole log when the test ends, somewhere in the
middle of a long run. A CI log that keeps only its head and tail then loses
which RUN line failed. So this runs lit with its results written as JSON and,
last, prints for each test that did not pass its name, the last RUN line it
started and the tail of its output. The slowest tests go to a file beside the
results (lit-slowest.txt), not to the log.

lit starts the longest tests first when it knows their times: a fresh clone
has none of its own, so lit reads test/.lit_test_times.txt (the times of a
CI run; refresh it from build/test/.lit_test_times.txt after a full run).
With the suite's lexical order the last long test ran alone for about a
minute on CI's two workers; the times only order the tests.

usage: run_lit.py LIT TEST_DIR [lit options...]
"""
import json
import os
import subprocess
import sys

TAIL_LINES = 40
BAD = {"FAIL", "XPASS", "UNRESOLVED", "TIMEOUT"}


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: run_lit.py LIT TEST_DIR [lit options...]")
    lit, test_dir, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
    results = os.path.join(test_dir, "lit-results.json")
    if os.path.exists(results):
        os.remove(results)
    sys.stdout.flush()
    rc = subprocess.call([lit, "-sv", "-o", results] + extra + [test_dir])
    try:
        with open(results) as f:
            tests = json.load(f).get("tests", [])
    except (OSError, ValueError) as e:
        print(f"run_lit: no results from lit ({results}: {e})")
        return rc if rc else 1
    if not tests:
        print(f"run_lit: lit ran no tests ({results})")
        return 1
    slowest = sorted(tests, key=lambda t: t.get("elapsed") or 0, reverse=True)
    with open(os.path.join(test_dir, "lit-slowest.txt"), "w") as f:
        for t in slowest[:25]:
            f.write(f"{t.get('elapsed') or 0:8.1f}s  {t['name']}\n")
    bad = [t for t in tests if t.get("code") in BAD]
    if bad:
        print(f"\n=== {len(bad)} lit test(s) did not pass; the end of each one's log ===")
    for t in bad:
        lines = (t.get("output") or "").splitlines()
        run_lines = [l for l in lines if "# RUN: at line" in l]
        print(f"\n--- {t['code']}: {t['name']} ({t.get('elapsed') or 0:.0f} s)")
        if run_lines:
            last = run_lines[-1]
            print("last RUN line started:", last[-300:] if len(last) > 300 else last)
        for l in lines[-TAIL_LINES:]:
            print("  " + (l if len(l) <= 400 else l[:400] + " [...]"))
    if bad and rc == 0:
        rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
