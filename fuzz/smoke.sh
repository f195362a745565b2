#!/usr/bin/env bash
# A short libFuzzer run for ctest: fuzz/run.sh with -runs=N (default 20000) on one target, or
# SKIPPED (exit 77) with the reason where Clang's libFuzzer is not installed.
# Usage: fuzz/smoke.sh TARGET [runs]
set -euo pipefail
target="$1"
runs="${2:-20000}"
root="$(cd "$(dirname "$0")/.." && pwd)"
CXX="${CXX:-$(command -v clang++ || true)}"
if [ -z "$CXX" ] || ! echo 'extern "C" int LLVMFuzzerTestOneInput(const char*, long) { return 0; }' |
    "$CXX" -x c++ -fsanitize=fuzzer,address -o /dev/null - 2>/dev/null; then
  echo "SKIPPED: no clang++ with libFuzzer (Debian: apt-get install clang libclang-rt-dev)"
  exit 77
fi
# No time limit (0): -runs bounds the run; the seeds alone are replayed first.
exec bash "$root/fuzz/run.sh" 0 "$target" -runs="$runs"
