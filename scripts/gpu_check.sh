#!/usr/bin/env bash
# The one prepared script for a GPU slot (an H100 / H200 for ~10 minutes, no network): builds strata
# with CUDA (release, for this GPU's architecture only), runs the CUDA tests and test_model /
# test_decoder, the CUDA tests again under compute-sanitizer memcheck, then the benchmark tables
# against PyTorch with short settings (bench/cuda_vs_torch.py: attention, scan, ssd, gemm;
# bench/vs_pytorch.py --device cuda: training and decode at batch 1 and 64 with the bandwidth bound).
#
#   scripts/gpu_check.sh                 # results in ${OUT:-gpu_out}/, build in ${BUILD_DIR:-build-gpu}
#   SKIP_BUILD=1 STAGES="memcheck tables" scripts/gpu_check.sh   # a rerun: reuse the build, some stages
#
# Each stage runs under its own time limit, cut to what is left of the whole budget
# (GPU_CHECK_BUDGET_S, default 530 s: a 10-minute slot less its start); a stage that fails or runs
# out of time is recorded and the next one runs. Results, few files on purpose (a GPU slot returns
# at most 8): summary.md (GPU, stage table, benchmark tables), gpu_check.log (every stage's full
# output in order) and results.json (the tables' raw rows). Without a GPU it still configures,
# builds and runs the tests (the CUDA ones skip themselves), skips the rest with a message, and
# writes the summary. Without an importable torch with CUDA, the tables run strata's side alone.
# Exit status: 1 when a stage failed or timed out, else 0.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
[ -d /usr/local/cuda/bin ] && export PATH="$PATH:/usr/local/cuda/bin"

OUT="${OUT:-gpu_out}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
build="${BUILD_DIR:-build-gpu}"
budget="${GPU_CHECK_BUDGET_S:-530}"
STAGES=" ${STAGES:-tests memcheck tables} "  # the build runs unless SKIP_BUILD=1
export PYTHONUNBUFFERED=1                     # the log keeps the order of what Python prints
jobs="$(nproc)"
log="$OUT/gpu_check.log"
summary="$OUT/summary.md"
parts="$(mktemp -d)"  # stage outputs and JSON parts; merged into $OUT at the end
trap 'rm -rf "$parts"' EXIT
: >"$log"
stages=()   # summary rows
failures=0
starved=0   # stages not started for lack of time

note() { echo "$*" | tee -a "$log" >&2; }

# run_stage NAME LIMIT_S CMD...: runs CMD under the smaller of LIMIT_S and the budget left (10 s are
# kept for the summary), its output appended to the log and kept in $parts/NAME.out; records the
# result. Returns CMD's status (124 on timeout, 125 when there was no time left to start it).
run_stage() {
  local name=$1 limit=$2
  shift 2
  local left=$((budget - SECONDS - 10))
  if ((left < 10)); then
    skip_stage "$name" "no time left (budget ${budget} s)"
    starved=$((starved + 1))
    return 125
  fi
  ((limit > left)) && limit=$left
  echo "===== $name (limit ${limit} s, $(date +%T)): $*" >>"$log"
  local t0=$SECONDS rc
  timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$log" >"$parts/$name.out"
  rc=${PIPESTATUS[0]}
  local dt=$((SECONDS - t0)) result
  if ((rc == 0)); then
    result="ok"
  elif ((rc == 124 || rc == 137)); then
    result="TIMEOUT after ${limit} s"
    failures=$((failures + 1))
  else
    result="FAILED (exit $rc)"
    failures=$((failures + 1))
  fi
  echo "===== $name: $result (${dt} s)" >>"$log"
  stages+=("| $name | $result | $dt | ${STAGE_NOTE:-} |")
  STAGE_NOTE=""
  return "$rc"
}

skip_stage() {
  echo "===== $1: skipped: $2" >>"$log"
  echo "skipped $1: $2" >&2
  stages+=("| $1 | skipped | 0 | $2 |")
}

# Keeps a stage's output (a table) for the summary.
tables=()
keep_table() { [ -s "$parts/$1.out" ] && tables+=("$1"); }

# --- the machine -------------------------------------------------------------------------------
gpu_list="$(command -v nvidia-smi >/dev/null && nvidia-smi -L 2>&1)"
[ -n "$gpu_list" ] || gpu_list="nvidia-smi: not found"
echo "$gpu_list" | tee -a "$log"
has_gpu=0
echo "$gpu_list" | grep -q '^GPU [0-9]' && has_gpu=1
gpu_info="$(nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv 2>/dev/null || true)"
arch="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
nvcc_version="$(nvcc --version 2>/dev/null | tail -1)"
sanitizer="$(command -v compute-sanitizer || true)"
py="${PYTHON:-python3}"
torch_line="$("$py" -c 'import torch; print(torch.__version__, torch.cuda.is_available())' 2>/dev/null || true)"
has_torch=0
[ "${torch_line##* }" = "True" ] && has_torch=1
note "gpu_check: commit $commit; gpu: $has_gpu (arch ${arch:-?}); nvcc: ${nvcc_version:-none}; torch: ${torch_line:-none}"
((has_gpu)) || note "gpu_check: no GPU here: the GPU stages will be skipped"
((has_torch)) || note "gpu_check: no torch with CUDA in '$py': the tables will have strata's side only"

# --- build -------------------------------------------------------------------------------------
cuda_tests=()
for f in tests/cuda/test_*.cpp; do cuda_tests+=("$(basename "$f" .cpp)"); done
targets=(strata_lib "${cuda_tests[@]}" test_model test_decoder bench_model cuda_attention cuda_ssm cuda_gemm)
built=0
if [ "${SKIP_BUILD:-0}" = 1 ]; then
  skip_stage configure "SKIP_BUILD=1"
  built=1
else
  cmake_args=(-DCMAKE_BUILD_TYPE=Release -DSTRATA_CUDA=ON -DSTRATA_BUILD_TESTS=ON -DSTRATA_BUILD_BENCH=ON)
  [ -n "$arch" ] && cmake_args+=("-DCMAKE_CUDA_ARCHITECTURES=$arch")  # this GPU only: half the nvcc time
  if run_stage configure 120 cmake -S . -B "$build" "${cmake_args[@]}"; then
    run_stage build 330 cmake --build "$build" -j "$jobs" --target "${targets[@]}" && built=1
  else
    # Most likely a library the image lacks (scripts/deps.sh lists them; there is no network here).
    missing="$(grep -hoE 'provided by "[^"]+"|Could NOT find [A-Za-z0-9_]+|No package .[^ ]+. found' \
      "$parts/configure.out" | sort -u | tr '\n' ';')"
    stages[-1]="${stages[-1]%|} ${missing:-see gpu_check.log} |"
  fi
fi
cuda_built=0
grep -q '^CMAKE_CUDA_COMPILER:.*nvcc' "$build/CMakeCache.txt" 2>/dev/null && cuda_built=1
((built && !cuda_built)) && note "gpu_check: $build was configured without CUDA (no nvcc?): the CUDA stages test nothing"

# --- tests -------------------------------------------------------------------------------------
if [[ $STAGES != *" tests "* ]]; then
  skip_stage tests "not in STAGES"
elif ((built)); then
  run_stage ctest_cuda 150 ctest --test-dir "$build" -L cuda -V -j 4 --timeout 120
  # One line per skipped case ("[  SKIPPED ] Suite.Case (0 ms)"), not the summary's list.
  skipped=$(grep -cE '\[  SKIPPED \] .* \([0-9]+ ms\)$' "$parts/ctest_cuda.out" 2>/dev/null || true)
  ((${skipped:-0} > 0)) && stages[-1]="${stages[-1]%|} ${skipped} test cases SKIPPED (no device?) |"
  run_stage test_model_decoder 150 ctest --test-dir "$build" -R '^(test_model|test_decoder)$' --output-on-failure \
    --timeout 140
else
  skip_stage tests "no build"
fi

# --- compute-sanitizer memcheck: one run per CUDA test binary, filtered to its quick cases, while
# the group has time left (MEMCHECK_BUDGET_S, default 150 s), so that the tables still get theirs.
declare -A memcheck_filter=(
  [test_cuda_attention]='CudaAttention.ForwardGqaRatiosAndOddLengths:CudaAttention.DecodeFromCache:CudaAttention.ForwardBf16TensorCores:CudaAttention.BackwardOddAndMlaDims:CudaAttention.PagedDecode'
  [test_cuda_model]='Blocks/CudaModel.*'
)
memcheck_end=$((SECONDS + ${MEMCHECK_BUDGET_S:-150}))
if [[ $STAGES != *" memcheck "* ]]; then
  skip_stage memcheck "not in STAGES"
elif ((!built)); then
  skip_stage memcheck "no build"
elif ((!has_gpu)); then
  skip_stage memcheck "no GPU"
elif [ -z "$sanitizer" ]; then
  skip_stage memcheck "compute-sanitizer not found"
else
  for t in "${cuda_tests[@]}"; do
    if ((memcheck_end - SECONDS < 15)); then
      skip_stage "memcheck_$t" "memcheck group out of time (MEMCHECK_BUDGET_S)"
      continue
    fi
    STAGE_NOTE="filter ${memcheck_filter[$t]:-*}"
    limit=$((memcheck_end - SECONDS < 45 ? memcheck_end - SECONDS : 45))
    run_stage "memcheck_$t" "$limit" "$sanitizer" --tool memcheck --error-exitcode 99 --print-limit 20 \
      "$build/tests/$t" --gtest_filter="${memcheck_filter[$t]:-*}" --gtest_brief=1
    rc=$?
    found="$(grep -m1 -o 'ERROR SUMMARY: [0-9]* error.*' "$parts/memcheck_$t.out" 2>/dev/null)"
    [ -n "$found" ] && stages[-1]="${stages[-1]%|} ${found} |"
    # The sanitizer refuses some virtualised devices outright: that is no finding about strata.
    if ((rc != 0)) && grep -q 'Device not supported' "$parts/memcheck_$t.out"; then
      stages[-1]="| memcheck_$t | skipped | 0 | compute-sanitizer: Device not supported here |"
      failures=$((failures - 1))
      skip_stage memcheck_rest "compute-sanitizer does not support this device"
      break
    fi
  done
fi

# --- benchmark tables --------------------------------------------------------------------------
bench="$build/bench"
if [[ $STAGES != *" tables "* ]]; then
  skip_stage tables "not in STAGES"
elif ((!built)); then
  skip_stage tables "no build"
elif ((!has_gpu)); then
  skip_stage tables "no GPU"
elif ((has_torch)); then
  for op in attention scan ssd gemm; do
    case $op in
      attention) limit=150 extra=(--T "1024,4096,16384" --hd "64,128") ;;
      scan | ssd) limit=90 extra=(--T "1024,4096") ;;
      gemm) limit=90 extra=(--sizes "1024,4096,8192") ;;
    esac
    run_stage "cuda_vs_torch_$op" "$limit" "$py" bench/cuda_vs_torch.py "$op" --bin-dir "$bench" \
      --iters 3 "${extra[@]}" --json "$parts/cuda_vs_torch_$op.json"
    keep_table "cuda_vs_torch_$op"
  done
  run_stage vs_pytorch_cuda 150 "$py" bench/vs_pytorch.py experiments/quickstart.yaml \
    experiments/jamba_small.yaml --bench-model "$bench/bench_model" --python "$py" --device cuda --check \
    --train-steps 5 --warmup-steps 2 --decode-tokens 32 --decode-batch 1,64 --json "$parts/vs_pytorch_cuda.json"
  keep_table vs_pytorch_cuda
else
  run_stage strata_attention 90 "$bench/cuda_attention" --iters 3 --T 1024,4096,16384 && keep_table strata_attention
  run_stage strata_ssm 60 "$bench/cuda_ssm" --iters 3 --T 1024,4096 && keep_table strata_ssm
  run_stage strata_gemm 60 "$bench/cuda_gemm" --iters 3 --sizes 1024,4096,8192 && keep_table strata_gemm
  for cfg in quickstart jamba_small; do
    run_stage "bench_model_$cfg" 60 "$bench/bench_model" "experiments/$cfg.yaml" train.device=cuda \
      --train-steps 5 --warmup-steps 2 --decode-tokens 32 --decode-batch 1,64 && keep_table "bench_model_$cfg"
  done
fi

# --- results -----------------------------------------------------------------------------------
"$py" - "$parts" "$OUT/results.json" <<'EOF' 2>>"$log" || note "gpu_check: could not merge the JSON results"
import glob, json, os, sys
parts, out = sys.argv[1], sys.argv[2]
found = {os.path.basename(p)[:-5]: json.load(open(p)) for p in sorted(glob.glob(os.path.join(parts, "*.json")))}
if found:
    json.dump(found, open(out, "w"), indent=1)
EOF
{
  echo "# strata GPU check"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'); commit $commit; $(hostname); ${SECONDS} s of a ${budget} s budget"
  echo
  echo '```'
  echo "$gpu_list"
  [ -n "$gpu_info" ] && echo "$gpu_info"
  echo "nvcc: ${nvcc_version:-none}; compute-sanitizer: ${sanitizer:-none}; torch (cuda available): ${torch_line:-none}"
  echo '```'
  echo
  echo "| stage | result | seconds | note |"
  echo "|---|---|---:|---|"
  printf '%s\n' "${stages[@]}"
  echo
  if ((failures)); then echo "**$failures stage(s) failed or timed out**: see gpu_check.log."; else echo "No stage failed."; fi
  ((starved)) && echo "$starved stage(s) did not start: the ${budget} s budget ran out (GPU_CHECK_BUDGET_S)."
  for t in "${tables[@]}"; do
    echo
    echo "## $t"
    echo
    # vs_pytorch prints markdown; the others fixed-width text
    if grep -q '^| config' "$parts/$t.out"; then grep -v '^\(check \|  \)' "$parts/$t.out"; else
      echo '```'
      grep -v '^  \|Warning\|warn(' "$parts/$t.out"
      echo '```'
    fi
  done
} >"$summary"
cat "$summary" >&2
((failures == 0))
