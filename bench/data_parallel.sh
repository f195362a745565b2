#!/usr/bin/env bash
# Data-parallel scaling on this machine: the same config and global batch trained by
#   A: 1 process x T threads           (OMP_NUM_THREADS=T)
#   B: T processes x 1 thread (mpirun)  gradients all-reduced in buckets during backward
#   C: as B with train.dist_overlap=false: every bucket after backward (the communication's full cost)
# and a table of tokens/s, B/A, the communication's share of B's step time, and how much of the
# communication B hid behind backward: 1 - exposed(B) / exposed(C), where exposed is the time the
# step spent in communication calls (starting and polling buckets during backward, waiting after
# it, and the per-step loss/stop agreement). Goals (issue 11): B >= 0.9 x A, >= 80 % hidden.
#
#   bench/data_parallel.sh                                  # quickstart, 2 cores, 60 steps
#   bench/data_parallel.sh experiments/quickstart.yaml train.steps=100 train.batch=32
# Env: BUILD_DIR (default build), THREADS (default: nproc), MPIRUN_ARGS (extra mpirun arguments).
set -euo pipefail
cd "$(dirname "$0")/.."
build="${BUILD_DIR:-build}"
threads="${THREADS:-$(nproc)}"
cfg="${1:-experiments/quickstart.yaml}"
shift || true
[ -x "$build/strata" ] || { echo "error: $build/strata missing; build it (cmake --build $build --target strata)" >&2; exit 1; }
command -v mpirun >/dev/null || { echo "error: mpirun missing (Debian: openmpi-bin libopenmpi-dev, scripts/deps.sh)" >&2; exit 1; }
[ -s data/corpus.txt ] || scripts/make_corpus.sh
out=$(mktemp -d /tmp/strata_dp_bench.XXXXXX)
common=(train.steps=60 train.eval_every=0 train.save_every=0 train.log_every=10 "$@")
root=(); [ "$(id -u)" -eq 0 ] && root=(--allow-run-as-root)
mpi=(mpirun "${root[@]}" --oversubscribe --bind-to core -np "$threads" -x OMP_NUM_THREADS=1 ${MPIRUN_ARGS:-})

echo "A: 1 process x $threads threads" >&2
OMP_NUM_THREADS=$threads "$build/strata" train "$cfg" "${common[@]}" train.run_dir="$out/A" --quiet >&2
echo "B: $threads processes x 1 thread, overlapped" >&2
"${mpi[@]}" "$build/strata" train "$cfg" "${common[@]}" train.run_dir="$out/B" --quiet >&2
echo "C: $threads processes x 1 thread, not overlapped" >&2
"${mpi[@]}" "$build/strata" train "$cfg" "${common[@]}" train.run_dir="$out/C" train.dist_overlap=false --quiet >&2

python3 - "$out" "$threads" <<'PY'
import json, sys
out, threads = sys.argv[1], int(sys.argv[2])
def rows(run):
    rs = [json.loads(l) for l in open(f"{out}/{run}/metrics.jsonl") if l.strip()]
    rs = [r for r in rs if "tokens_per_s" in r]
    return rs[1:] if len(rs) > 1 else rs  # the first window holds the warm-up (arena growth, caches)
def mean(rs, k): return sum(r[k] for r in rs) / len(rs)
A, B, C = rows("A"), rows("B"), rows("C")
tA, tB, tC = mean(A, "tokens_per_s"), mean(B, "tokens_per_s"), mean(C, "tokens_per_s")
def exposed(rs): return mean(rs, "comm_in_backward_ms") + mean(rs, "comm_wait_ms") + mean(rs, "comm_agree_ms")
eB, eC = exposed(B), exposed(C)
print(f"| run | tokens/s | vs A | step ms | communication ms/step (exposed) | share of step |")
print(f"|---|---|---|---|---|---|")
print(f"| A: 1 process x {threads} threads | {tA:.0f} | 1.00 | | | |")
for name, rs, t, e in ((f"B: {threads} processes x 1 thread, overlapped", B, tB, eB),
                       (f"C: {threads} processes x 1 thread, after backward", C, tC, eC)):
    print(f"| {name} | {t:.0f} | {t / tA:.2f} | {mean(rs, 'step_ms'):.1f} | {e:.2f} | {100 * e / mean(rs, 'step_ms'):.1f} % |")
hidden = 1 - eB / eC if eC > 0 else float("nan")
print(f"\nB: {mean(B, 'buckets_started_in_backward'):.1f} buckets per step started during backward; "
      f"communication hidden behind backward: {100 * hidden:.0f} % (1 - exposed B / exposed C)")
print(f"goals: B/A = {tB / tA:.2f} (>= 0.9), hidden = {100 * hidden:.0f} % (>= 80 %)")
PY
rm -rf "$out"
