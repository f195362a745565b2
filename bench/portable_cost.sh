#!/usr/bin/env bash
# What the portable build costs (docs/clusters.md, "Which build"): bench_model's training and decode
# tokens/s of several builds of the same source on one config, runs interleaved (A B C A B C ...)
# so that a change in the machine's load hits every build alike; prints one Markdown row per build:
# the medians over the repeats of tokens per CPU second of the timed sections (bench_model's
# train_cpu_s / decode_cpu_s; with one thread this is what the code costs, little moved by the
# neighbours' load) and their ratio to the first build, then the wall-clock tokens/s.
#
#   bench/portable_cost.sh [--repeat N] [--threads T] [--config CFG] NAME=BUILD_DIR... [-- bench_model options]
#   bench/portable_cost.sh native=build portable=build-portable nodispatch=build-nodispatch
#
# Each BUILD_DIR needs bench/bench_model (configured with STRATA_BUILD_BENCH=ON). The builds:
#   native     -DSTRATA_NATIVE=ON (default)        -march=native
#   portable   -DSTRATA_NATIVE=OFF                 x86-64-v3 + AVX-512 kernel copies chosen at run time
#   nodispatch -DSTRATA_NATIVE=OFF -DSTRATA_CPU_DISPATCH=OFF   x86-64-v3 everywhere
# The uptime load average before each run is printed: on a shared machine the numbers are only as
# good as the quiet they were taken in. Set NICE=19 to run them under nice (then say so).
set -euo pipefail
cd "$(dirname "$0")/.."
repeat=3 threads=1 config=experiments/quickstart.yaml
builds=() extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --repeat) repeat="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --config) config="$2"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *=*) builds+=("$1"); shift ;;
    *) echo "usage: bench/portable_cost.sh [--repeat N] [--threads T] [--config CFG] NAME=BUILD_DIR... [-- bench_model options]" >&2
       exit 2 ;;
  esac
done
[ ${#builds[@]} -gt 0 ] || { echo "name at least one NAME=BUILD_DIR" >&2; exit 2; }
[ ${#extra[@]} -gt 0 ] || extra=(--train-steps 8 --warmup-steps 2 --decode-tokens 32 --decode-batch 4)
for b in "${builds[@]}"; do
  [ -x "${b#*=}/bench/bench_model" ] || { echo "${b#*=}/bench/bench_model not found (build it: --target bench_model)" >&2; exit 2; }
done
out=$(mktemp -d)
for r in $(seq "$repeat"); do
  for b in "${builds[@]}"; do
    name="${b%%=*}" dir="${b#*=}"
    echo "run $r $name: load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
    OMP_NUM_THREADS="$threads" nice -n "${NICE:-0}" "$dir/bench/bench_model" "$config" "${extra[@]}" 2>/dev/null | tail -1 >"$out/$name.$r.json"
  done
done
python3 - "$out" "$repeat" "${builds[@]}" <<'EOF'
import json, statistics, sys
out, repeat, builds = sys.argv[1], int(sys.argv[2]), [b.split("=", 1)[0] for b in sys.argv[3:]]
med = statistics.median
rows = []
for name in builds:
    runs = [json.load(open(f"{out}/{name}.{r}.json")) for r in range(1, repeat + 1)]
    tr = [x["train_tokens_per_s"] for x in runs]
    de = [x["decode_tokens_per_s"] for x in runs]
    # Tokens per CPU second of the timed sections: what the work costs, whatever the neighbours do.
    trc = [x["train_tokens_per_s"] * x["train_s"] / x["train_cpu_s"] for x in runs]
    dec = [x["decode_tokens_per_s"] * x["decode_s"] / x["decode_cpu_s"] for x in runs]
    rows.append((name, runs[0].get("cpu_kernels", "?"), med(trc), min(trc), max(trc), med(dec), med(tr), med(de)))
b = rows[0]
print(f"| build | CPU kernels | train tokens per CPU s (median, min-max of {repeat}) | vs {b[0]} "
      f"| decode tokens per CPU s | vs {b[0]} | train tokens/s wall | decode tokens/s wall |")
print("|---|---|---|---|---|---|---|---|")
for n, isa, t, lo, hi, d, tw, dw in rows:
    print(f"| {n} | {isa} | {t:.0f} ({lo:.0f}-{hi:.0f}) | {t / b[2]:.3f} | {d:.0f} | {d / b[5]:.3f} | {tw:.0f} | {dw:.0f} |")
EOF
rm -rf "$out"
