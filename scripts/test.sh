#!/usr/bin/env bash
# The README's second command: the whole test suite. Release build: every test; ASan+UBSan build:
# the fast tests. The Python oracle venv (TensorBoard) is created first, outside the clone.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
if ! scripts/python_env.sh python/requirements-test.txt >/dev/null; then
  echo "WARNING: could not create the Python test venv; tests that need it will report SKIPPED" >&2
fi
jobs="$(nproc)"
scripts/build.sh release
(cd build && ctest --output-on-failure -j "$jobs" --timeout 900)
scripts/build.sh asan
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --output-on-failure -j "$jobs" -L fast --timeout 900)
