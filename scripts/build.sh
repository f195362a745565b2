#!/usr/bin/env bash
# Configures and builds one flavour: scripts/build.sh [release|asan]  -> build/ or build-asan/
set -euo pipefail
cd "$(dirname "$0")/.."
flavour="${1:-release}"
jobs="$(nproc)"
case "$flavour" in
  release) cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
           cmake --build build -j "$jobs" ;;
  asan)    cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSTRATA_SANITIZE=ON -DSTRATA_BUILD_BENCH=OFF >/dev/null
           cmake --build build-asan -j "$jobs" ;;
  *) echo "usage: scripts/build.sh [release|asan]" >&2; exit 2 ;;
esac
