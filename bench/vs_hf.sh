#!/usr/bin/env bash
# Builds bench_infer and runs bench/vs_hf.py (strata vs transformers and llama.cpp on the same random
# Hugging Face models, one table) with the venv of python/requirements-bench.txt. Arguments go to
# vs_hf.py, e.g.
#   bench/vs_hf.sh                                  # every architecture but llama_100m
#   bench/vs_hf.sh llama llama_100m --repeat 3 --threads 2
# BUILD_DIR (default: build) selects the CMake build directory; it is configured if it does not exist.
set -euo pipefail
cd "$(dirname "$0")/.."
build="${BUILD_DIR:-build}"
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >&2
fi
cmake --build "$build" --target bench_infer -j "$(nproc)" >&2
venv=$(scripts/python_env.sh python/requirements-bench.txt)
exec "$venv/bin/python" bench/vs_hf.py --bench-infer "$build/bench/bench_infer" "$@"
