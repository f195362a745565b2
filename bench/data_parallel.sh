#!/usr/bin/env bash
# Data-parallel scaling on this machine: the same config and global batch trained by
#   A: 1 process x T threads           (OMP_NUM_THREADS=T)
#   B: T processes x 1 thread (mpirun)  gradients all-reduced in buckets during backward
#   C: as B with train.dist_overlap=false: every bucket after backward (the communication's full cost)
#   D: as B with a thread of each rank polling the sums (STRATA_MPI_SUM_THREAD=1) instead of the
#      main thread after each layer
# and a table of tokens/s, B/A, the communication's share of the step time, and how much of the
# communication B hid behind backward. A run's communication time per step is what its step spent
# in communication calls (starting buckets during backward, waiting for them after it, the per-step
# loss/stop agreement) less the wait for a slower rank to finish backward (comm_skew_ms, from the
# ranks' clocks): C's is the whole cost, B's what backward did not hide; hidden = 1 - B's / C's.
# Goals (issue 11): B >= 0.9 x A, >= 80 % hidden.
#
#   bench/data_parallel.sh                                  # quickstart, 2 cores, 60 steps
#   bench/data_parallel.sh experiments/quickstart.yaml train.steps=100 train.batch=32
# Env: BUILD_DIR (default build), THREADS (default: nproc), REPEAT (default 1: rounds of A, B, C,
# interleaved; the table takes each metric's median over every logged window of every round, which
# a busy machine's spikes move less than a mean), MPIRUN_ARGS (extra mpirun arguments).
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

for ((r = 1; r <= ${REPEAT:-1}; ++r)); do
  echo "round $r: A: 1 process x $threads threads" >&2
  OMP_NUM_THREADS=$threads "$build/strata" train "$cfg" "${common[@]}" train.run_dir="$out/A$r" --quiet >&2
  echo "round $r: B: $threads processes x 1 thread, overlapped" >&2
  "${mpi[@]}" "$build/strata" train "$cfg" "${common[@]}" train.run_dir="$out/B$r" --quiet >&2
  echo "round $r: C: $threads processes x 1 thread, not overlapped" >&2
  "${mpi[@]}" "$build/strata" train "$cfg" "${common[@]}" train.run_dir="$out/C$r" train.dist_overlap=false --quiet >&2
  echo "round $r: D: $threads processes x 1 thread, overlapped, sum thread" >&2
  STRATA_MPI_SUM_THREAD=1 "${mpi[@]}" -x STRATA_MPI_SUM_THREAD "$build/strata" train "$cfg" "${common[@]}" \
    train.run_dir="$out/D$r" --quiet >&2
done

python3 - "$out" "$threads" "${REPEAT:-1}" <<'PY'
import json, statistics, sys
out, threads, repeat = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def rows(run):
    got = []
    for r in range(1, repeat + 1):
        rs = [json.loads(l) for l in open(f"{out}/{run}{r}/metrics.jsonl") if l.strip()]
        rs = [x for x in rs if "tokens_per_s" in x]
        got += rs[1:] if len(rs) > 1 else rs  # the first window holds the warm-up (arena growth, caches)
    return got
def med(rs, k): return statistics.median(r[k] for r in rs)
A, B, C, D = rows("A"), rows("B"), rows("C"), rows("D")
tA, tB, tC, tD = (med(x, "tokens_per_s") for x in (A, B, C, D))
def comm(rs):  # ms per step in communication calls, less the wait for a slower rank (median of windows)
    return max(0.0, statistics.median(r["comm_in_backward_ms"] + r["comm_wait_ms"] + r["comm_agree_ms"] - r["comm_skew_ms"]
                                      for r in rs))
def cpu(rs):  # ms per step of those that were this rank's own CPU work inside the MPI calls (copying, adding)
    return statistics.median(r.get("comm_cpu_ms", 0.0) for r in rs)
cB, cC, cD = comm(B), comm(C), comm(D)
print("| run | tokens/s | vs A | step ms | communication ms/step | of which CPU work | share of step |")
print("|---|---|---|---|---|---|---|")
print(f"| A: 1 process x {threads} threads | {tA:.0f} | 1.00 | | | | |")
for name, rs, t, c in ((f"B: {threads} processes x 1 thread, overlapped", B, tB, cB),
                       (f"C: {threads} processes x 1 thread, after backward", C, tC, cC),
                       (f"D: as B, sums polled by a thread of their own", D, tD, cD)):
    print(f"| {name} | {t:.0f} | {t / tA:.2f} | {med(rs, 'step_ms'):.1f} | {c:.2f} "
          f"(+ {med(rs, 'comm_skew_ms'):.2f} waiting for the slower rank) | {cpu(rs):.2f} | {100 * c / med(rs, 'step_ms'):.1f} % |")
hidden = 1 - cB / cC if cC > 0 else float("nan")
hidden_d = 1 - cD / cC if cC > 0 else float("nan")
# What overlap can hide is the part of a sum that is not the calling core's own work: waiting for a
# transfer or for the peer's half. A shared-memory MPI on one node has little of it (the receiver
# copies and adds inside its own calls), so there the goal is measured on that part alone.
wB, wC = max(0.0, cB - cpu(B)), max(0.0, cC - cpu(C))
hidden_wait = 1 - wB / wC if wC > 0.05 else float("nan")
print(f"\nB started {med(B, 'buckets_started_in_backward'):.1f} buckets per step during backward; communication "
      f"hidden behind backward: {100 * hidden:.0f} % (1 - B's communication time / C's; D: {100 * hidden_d:.0f} %)")
print(f"C's communication was {100 * cpu(C) / cC if cC > 0 else float('nan'):.0f} % CPU work of the ranks' own cores "
      f"(not hideable behind a backward that uses every core); of the rest, the waiting "
      f"({wC:.2f} ms/step in C, {wB:.2f} in B), B hid {100 * hidden_wait:.0f} %")
print(f"goals: B/A = {tB / tA:.2f} (>= 0.9), hidden = {100 * hidden:.0f} % of all, {100 * hidden_wait:.0f} % of the waiting (>= 80 %)")
PY
rm -rf "$out"
