#!/usr/bin/env bash
# The serving benchmark in one command (issue 13, item 4): strata serve vs llama.cpp's server (F32 and
# Q8_0 GGUF) vs transformers generate, on one random-weight imported Llama, agentic / interactive /
# rollouts workloads, one markdown table per workload; then hybrid vs transformer capacity on paper.
#   bench/serve/run.sh [--scale cpu|full | --full] [--threads T] [--only PEER ...] [--workload W ...]
# Every option goes to bench/serve/compare.py. Environment:
#   BUILD_DIR     strata's build directory (default build; configured and `strata` built when missing)
#   STRATA        a strata binary to use instead (no build)
#   LLAMA_SERVER  a llama-server binary to use instead of bench/serve/build_llama_server.sh's
#   PYTHON        a python with torch + transformers (+ gguf) instead of the python/requirements-bench.txt venv
#   WORKDIR       where the model, GGUFs, logs and results go (default ~/.cache/strata/bench-serve)
# Report: $WORKDIR/report.md (also printed).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
work="${WORKDIR:-${STRATA_CACHE:-$HOME/.cache/strata}/bench-serve}"
mkdir -p "$work"
threads=$(nproc)
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do [ "${args[i]}" = --threads ] && threads="${args[i + 1]}"; done

# strata: its column needs `strata serve`; import and inspect work with any recent build.
build="${BUILD_DIR:-build}"
strata="${STRATA:-$build/strata}"
if [ -z "${STRATA:-}" ] && [ ! -x "$strata" ]; then
  [ -f "$build/CMakeCache.txt" ] || cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DSTRATA_BUILD_BENCH=OFF >&2
  cmake --build "$build" --target strata -j "$(nproc)" >&2
fi
# (`strata serve --help` is no test: CLI11 prints the top-level help for an unknown subcommand too.)
if "$strata" --help 2>/dev/null | grep -qE '^  serve '; then echo "strata: $strata has serve" >&2
else echo "strata: $strata has NO serve subcommand: the strata column will be missing" >&2; fi

# llama.cpp's server and quantizer, built from the llama-cpp-python sdist's llama.cpp.
if [ -n "${LLAMA_SERVER:-}" ]; then llama_bin=$(dirname "$LLAMA_SERVER")
else llama_bin=$(bench/serve/build_llama_server.sh); fi

py="${PYTHON:-$(scripts/python_env.sh python/requirements-bench.txt)/bin/python}"
if ! "$py" -c "import gguf" 2>/dev/null; then  # gguf-py ships in llama.cpp's source too
  export PYTHONPATH="$(dirname "$llama_bin")/src/gguf-py${PYTHONPATH:+:$PYTHONPATH}"
fi

# The model: HF directory, GGUF F32 and Q8_0 (llama.cpp's quantizer), strata checkpoint.
quant=()
[ -x "$llama_bin/llama-quantize" ] && quant=(--llama-quantize "$llama_bin/llama-quantize")
"$py" bench/serve/make_model.py "$work" "${quant[@]}" >&2
ckpt="$work/hf"
if [ -x "$strata" ]; then
  if [ ! -f "$work/model.h5" ] || [ "$work/hf/model.safetensors" -nt "$work/model.h5" ]; then
    "$strata" import hf "$work/hf" -o "$work/model.h5" >&2 || echo "strata import hf failed; serving the HF directory" >&2
  fi
  [ -f "$work/model.h5" ] && ckpt="$work/model.h5"
fi

{
  echo "# bench/serve $(date -u +%FT%TZ), $(git rev-parse --short HEAD), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
  echo
  "$py" bench/serve/compare.py --model-dir "$work" --strata "$strata" --ckpt "$ckpt" \
    --llama-server "$llama_bin/llama-server" "$@"
  echo
  if [ -x "$strata" ]; then
    "$py" bench/serve/hybrid_capacity.py --strata "$strata" | grep -v "^{" || echo "(hybrid capacity: strata inspect failed)"
  fi
} | tee "$work/report.md"
