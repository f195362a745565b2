#!/usr/bin/env bash
# ZeRO-1's cost on this machine: the same config and global batch trained by
#   B: N processes x 1 thread (mpirun), plain data parallelism (every rank keeps all AdamW moments)
#   Z: as B with train.dist_zero1=true (each rank keeps 1/N of the moments, updates its shard of the
#      parameters, then an all-gather brings the rest)
# and a table of tokens/s, step time, the all-gather's time per step and the optimizer memory per
# rank. Rounds alternate B and Z (REPEAT, default 3) and the table takes each metric's median over
# every logged window but each run's first (warm-up), which a busy machine's spikes move less.
#
#   bench/zero1.sh                                     # quickstart, 2 ranks, 60 steps
#   bench/zero1.sh experiments/quickstart.yaml train.steps=100
# Env: BUILD_DIR (default build), RANKS (default: nproc), REPEAT, MPIRUN_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
build="${BUILD_DIR:-build}"
ranks="${RANKS:-$(nproc)}"
cfg="${1:-experiments/quickstart.yaml}"
shift || true
[ -x "$build/strata" ] || { echo "error: $build/strata missing; build it (cmake --build $build --target strata)" >&2; exit 1; }
command -v mpirun >/dev/null || { echo "error: mpirun missing (Debian: openmpi-bin libopenmpi-dev, scripts/deps.sh)" >&2; exit 1; }
[ -s data/corpus.txt ] || scripts/make_corpus.sh
out=$(mktemp -d /tmp/strata_zero1_bench.XXXXXX)
common=(train.steps=60 train.eval_every=0 train.save_every=0 train.log_every=10 "$@")
root=(); [ "$(id -u)" -eq 0 ] && root=(--allow-run-as-root)
mpi=(mpirun "${root[@]}" --oversubscribe --bind-to core -np "$ranks" -x OMP_NUM_THREADS=1 ${MPIRUN_ARGS:-})

for ((r = 1; r <= ${REPEAT:-3}; ++r)); do
  echo "round $r: B: $ranks processes, plain" >&2
  "${mpi[@]}" "$build/strata" train "$cfg" "${common[@]}" train.run_dir="$out/B$r" --quiet >&2
  echo "round $r: Z: $ranks processes, ZeRO-1" >&2
  "${mpi[@]}" "$build/strata" train "$cfg" "${common[@]}" train.run_dir="$out/Z$r" train.dist_zero1=true 2> "$out/Z$r.log" >&2 \
    || { cat "$out/Z$r.log" >&2; exit 1; }
done
# The start line of a ZeRO-1 run says the moments' size per rank and in all.
mem=$(grep -o 'ZeRO-1: AdamW moments sharded, [^)]*)' "$out/Z1.log" | head -1)

python3 - "$out" "$ranks" "${REPEAT:-3}" "$mem" <<'PY'
import json, statistics, sys
out, ranks, repeat, mem = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def rows(run):
    got = []
    for r in range(1, repeat + 1):
        rs = [json.loads(l) for l in open(f"{out}/{run}{r}/metrics.jsonl") if l.strip()]
        rs = [x for x in rs if "tokens_per_s" in x]
        got += rs[1:] if len(rs) > 1 else rs
    return got
def med(rs, k): return statistics.median(r.get(k, 0.0) for r in rs)
B, Z = rows("B"), rows("Z")
tB, tZ = med(B, "tokens_per_s"), med(Z, "tokens_per_s")
print("| run | tokens/s | vs B | step ms | all-gather ms/step | gradient sums ms/step |")
print("|---|---|---|---|---|---|")
for name, rs, t in ((f"B: {ranks} ranks, plain", B, tB), (f"Z: {ranks} ranks, ZeRO-1", Z, tZ)):
    sums = med(rs, "comm_in_backward_ms") + med(rs, "comm_wait_ms")
    print(f"| {name} | {t:.0f} | {t / tB:.2f} | {med(rs, 'step_ms'):.1f} | {med(rs, 'comm_allgather_ms'):.2f} | {sums:.2f} |")
print(f"\n{mem}")
PY
rm -rf "$out"
