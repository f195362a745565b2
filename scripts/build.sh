#!/usr/bin/env bash
# Configures and builds one flavour: scripts/build.sh [release|asan|emu|portable]
#   -> build/, build-asan/, build-emu/ or build-portable/
# portable: no -march=native; an x86-64-v3 baseline (AVX2 + FMA) with AVX-512 copies of the hot kernels
# chosen at run time, for clusters whose nodes differ from the build machine (docs/clusters.md).
# emu: the CUDA twins compiled as C++ on the CPU emulator (tests/emulator), with gcov instrumentation
# of src/kernels/cuda (scripts/cuda_coverage.sh reports it after the tests ran).
set -euo pipefail
cd "$(dirname "$0")/.."
flavour="${1:-release}"
jobs="$(nproc)"
case "$flavour" in
  release) cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
           cmake --build build -j "$jobs" ;;
  # Without MPI: Open MPI keeps its global state at exit (LeakSanitizer would report it in every
  # mpirun test); this build checks instead that a multi-rank launch of a binary without MPI is refused.
  asan)    cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSTRATA_SANITIZE=ON -DSTRATA_BUILD_BENCH=OFF -DSTRATA_MPI=OFF >/dev/null
           cmake --build build-asan -j "$jobs" ;;
  emu)     cmake -S . -B build-emu -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTRATA_CUDA_EMULATOR=ON -DSTRATA_CUDA_COVERAGE=ON \
             -DSTRATA_BUILD_BENCH=OFF >/dev/null
           cmake --build build-emu -j "$jobs" ;;
  portable) cmake -S . -B build-portable -DCMAKE_BUILD_TYPE=Release -DSTRATA_NATIVE=OFF >/dev/null
           cmake --build build-portable -j "$jobs" ;;
  *) echo "usage: scripts/build.sh [release|asan|emu|portable]" >&2; exit 2 ;;
esac
