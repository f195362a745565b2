#!/usr/bin/env bash
# Builds bench_model and runs bench/vs_pytorch.py (strata vs plain PyTorch, same configs, one table)
# with the venv of python/requirements-bench.txt. Arguments go to vs_pytorch.py, e.g.
#   bench/vs_pytorch.sh                                   # jamba_small + quickstart, default settings
#   bench/vs_pytorch.sh experiments/mamba1_small.yaml --train-steps 5 --check
# BUILD_DIR (default: build) selects the CMake build directory; it is configured if it does not exist.
set -euo pipefail
cd "$(dirname "$0")/.."
build="${BUILD_DIR:-build}"
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >&2
fi
cmake --build "$build" --target bench_model -j "$(nproc)" >&2
venv=$(scripts/python_env.sh python/requirements-bench.txt)
exec "$venv/bin/python" bench/vs_pytorch.py --bench-model "$build/bench/bench_model" "$@"
