#!/usr/bin/env bash
# The README's second command: the whole test suite. Release build: every test (the CUDA device
# tests report SKIPPED without a GPU); ASan+UBSan build: the fast tests; emulated CUDA build: the
# device tests on the CPU emulator, with line coverage of src/kernels/cuda; portable build: its
# instruction-set checks. The Python oracle venv is created first, outside the clone; under CI
# (CI=true) a venv that cannot be made fails the run instead of skipping the oracle tests. The last
# line counts test cases over all runs: "strata: N passed, N failed, N skipped" (scripts/test_summary.py).
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
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0" run_ctest build-asan -L fast
# The CUDA twins on the CPU emulator of the CUDA execution model (tests/emulator): every device test
# in tests/cuda runs for real, and gcov reports how many lines of src/kernels/cuda they executed.
scripts/build.sh emu
scripts/cuda_coverage.sh build-emu --reset >/dev/null
run_ctest build-emu -L cuda
scripts/cuda_coverage.sh build-emu --min 90 || status=1
# The portable build (docs/clusters.md, "Which build"): strata scanned for instructions beyond its
# x86-64-v3 baseline, and run with the kernel tests on an emulated Haswell (qemu-user). Only what
# those two tests need is built (target portable_checks), without the CUDA twins (nvcc's host code
# has no -march, so they add nothing to check) and without the Python module, in a directory of its
# own so that scripts/build.sh portable's build-portable keeps its options.
cmake -S . -B build-portable-check -DCMAKE_BUILD_TYPE=Release -DSTRATA_NATIVE=OFF -DSTRATA_CUDA=OFF -DSTRATA_PYTHON=OFF \
  >/dev/null
cmake --build build-portable-check -j "$jobs" --target portable_checks
run_ctest build-portable-check -R '^test_(portable_isa|emulated_cpu)$'
scripts/test_summary.py "${results[@]}" || status=1
exit "$status"
