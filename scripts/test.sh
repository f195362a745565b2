#!/usr/bin/env bash
# The README's second command: the whole test suite. Release build: every test; ASan+UBSan build:
# the fast tests. The Python oracle venv is created first, outside the clone; under CI (CI=true) a
# venv that cannot be made fails the run instead of skipping the oracle tests. The last line counts
# test cases over all runs: "strata: N passed, N failed, N skipped" (scripts/test_summary.py).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
if ! scripts/python_env.sh python/requirements-test.txt >/dev/null; then
  if [ "${CI:-}" = true ]; then
    echo "ERROR: could not create the Python test venv (scripts/python_env.sh); CI=true does not skip oracle tests" >&2
    exit 1
  fi
  echo "WARNING: could not create the Python test venv; tests that need it will report SKIPPED" >&2
fi
jobs="$(nproc)"
status=0
results=()
# run_ctest BUILD_DIR [ctest args...]: one ctest run, its GoogleTest XML reports in BUILD_DIR/test-results.
run_ctest() {
  local dir="$1"; shift
  local out="$PWD/$dir/test-results"
  rm -rf "$out" "$dir/Testing/Temporary/LastTestsFailed.log"
  mkdir -p "$out"
  (cd "$dir" && GTEST_OUTPUT="xml:$out/" ctest --output-on-failure -j "$jobs" --timeout 900 "$@") || status=1
  cp "$dir/Testing/Temporary/LastTestsFailed.log" "$out/ctest-failed.txt" 2>/dev/null || true
  results+=("$dir/test-results")
}
scripts/build.sh release
run_ctest build
scripts/build.sh asan
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 run_ctest build-asan -L fast
scripts/test_summary.py "${results[@]}" || status=1
exit "$status"
