#!/usr/bin/env python3
"""Data-parallel scaling on paper: when does averaging gradients over N GPUs stop paying off?

For every experiments/*.yaml language config (parameter count and FLOPs per token read from
`strata inspect`) and for GPT-3-shaped models of 125M to 13B parameters, this prints

  * the gradient bytes all-reduced every step (fp32 and bf16 gradients),
  * the ring all-reduce time  t_ar = 2(N-1)/N * bytes / busbw + 2(N-1) * alpha
    for N = 8, 16, 32, 64 GPUs over NVLink (H100 SXM) and InfiniBand HDR / NDR (one NIC per GPU),
  * the compute time of one step per GPU  t_c = train FLOPs/token * tokens per GPU / (MFU * peak),
  * the efficiency  t_c / (t_c + unhidden comm), where backward hides `overlap` of the all-reduce
    but never more than the backward time (2/3 of t_c),

and, per model, the smallest per-GPU batch (tokens) at which the efficiency still reaches the
threshold (0.8 unless --threshold). Python 3 standard library only.

  bench/dp_scaling_model.py                          # tables for experiments/*.yaml + GPT-3 sizes
  bench/dp_scaling_model.py --markdown               # the same as markdown (docs/clusters.md)
  bench/dp_scaling_model.py --measured RUN_DIR       # + a sanity row from a 2-rank CPU run's metrics.jsonl
  bench/dp_scaling_model.py --self-test              # checks the formulas (ctest: dp_scaling_model_selftest)

Numbers used (override with the options):
  peak    989 TFLOP/s: H100 SXM dense BF16 tensor-core peak (NVIDIA H100 datasheet; 1979 is with sparsity)
  MFU     0.40: an assumed model FLOPs utilisation for a well-tuned dense training step on an H100
  NVLink  450 GB/s: H100 SXM NVLink 4 is 900 GB/s per GPU counting both directions (datasheet); a ring
          all-reduce's bus bandwidth (NCCL tests' busbw = algbw * 2(N-1)/N, which for a ring is what
          each link carries one way) is bounded by one direction. Only N = 8 is one HGX node; N > 8
          over NVLink needs an NVLink Switch System and is shown as an upper bound
  HDR     25 GB/s per GPU (200 Gb/s InfiniBand HDR, one NIC per GPU)
  NDR     50 GB/s per GPU (400 Gb/s InfiniBand NDR, e.g. DGX H100's eight ConnectX-7)
  alpha   per ring step latency, assumed: 2 us NVLink, 5 us InfiniBand
Link rates are line rates: NCCL measures somewhat less (protocol overhead), so the times are lower
bounds and the efficiencies upper bounds for the communication part.
"""
import argparse
import glob
import json
import math
import os
import re
import statistics
import subprocess
import sys

GB = 1e9

LINKS = [  # name, bus bandwidth (bytes/s), per-step latency (s)
    ("NVLink H100", 450 * GB, 2e-6),
    ("IB NDR 400G", 50 * GB, 5e-6),
    ("IB HDR 200G", 25 * GB, 5e-6),
]

# GPT-3 shapes (Brown et al. 2020, table 2.1): name, parameters, layers, d_model, global batch in
# tokens; context 2048.
GPT3 = [
    ("GPT-3 125M", 125e6, 12, 768, 0.5e6),
    ("GPT-3 350M", 350e6, 24, 1024, 0.5e6),
    ("GPT-3 1.3B", 1.3e9, 24, 2048, 1e6),
    ("GPT-3 6.7B", 6.7e9, 32, 4096, 2e6),
    ("GPT-3 13B", 13e9, 40, 5140, 2e6),
]
GPT3_SEQ = 2048


def ring_allreduce_s(nbytes, n, busbw, alpha):
    """Ring all-reduce of nbytes over n ranks: reduce-scatter + all-gather, 2(n-1) steps of nbytes/n."""
    if n <= 1:
        return 0.0
    return 2.0 * (n - 1) / n * nbytes / busbw + 2.0 * (n - 1) * alpha


def efficiency(t_compute, t_comm, overlap):
    """Share of the step spent computing. Backward (2/3 of the compute) can hide `overlap` of the
    communication, never more than its own length; the rest adds to the step."""
    hidden = min(overlap * t_comm, 2.0 / 3.0 * t_compute)
    unhidden = t_comm - hidden
    return t_compute / (t_compute + unhidden) if t_compute + unhidden > 0 else 1.0


def min_tokens_for(threshold, flops_per_token, t_comm, overlap, flops_per_s):
    """Smallest tokens per GPU per step with efficiency >= threshold (bisection; efficiency grows
    with the batch because compute does and communication does not)."""
    def eff(tokens):
        return efficiency(flops_per_token * tokens / flops_per_s, t_comm, overlap)
    if t_comm <= 0:
        return 1.0
    lo, hi = 1.0, 1.0
    while eff(hi) < threshold:
        hi *= 2
        if hi > 1e12:
            return math.inf
    while hi / lo > 1.001:
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if eff(mid) >= threshold else (mid, hi)
    return hi


def inspect(strata, cfg):
    """Parameters, forward FLOPs per token and context from `strata inspect CFG`."""
    out = subprocess.run([strata, "inspect", cfg], capture_output=True, text=True, check=True).stdout
    params = int(re.search(r"^parameters: (\d+)", out, re.M).group(1))
    m = re.search(r"^forward FLOPs per token at context (\d+): ([\d.]+)([KMG]?)", out, re.M)
    fwd = float(m.group(2)) * {"": 1, "K": 1e3, "M": 1e6, "G": 1e9}[m.group(3)]
    return params, fwd, int(m.group(1))


def config_batch(cfg):
    """train.batch of a config file (sequences per global batch); 1 when it does not say."""
    m = re.search(r"^\s*batch:\s*(\d+)|[{,]\s*batch:\s*(\d+)", open(cfg).read(), re.M)
    return int(m.group(1) or m.group(2)) if m else 1


def human(x, unit=""):
    for div, suf in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(x) >= div:
            return f"{x / div:.3g}{suf}{unit}"
    return f"{x:.3g}{unit}"


def num(x):
    return f"{x:.2g}" if x < 100 else f"{x:.0f}"


def ms(s):
    return f"{s * 1e3:.3g}" if s < 0.1 else f"{s * 1e3:.0f}"


def table(rows, head, markdown):
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    else:
        w = [max(len(str(c)) for c in col) for col in zip(head, *rows)]
        lines = ["  ".join(str(c).rjust(x) for c, x in zip(head, w))]
        lines += ["  ".join(str(c).rjust(x) for c, x in zip(r, w)) for r in rows]
    return "\n".join(lines) + "\n"


def measured_row(run_dir):
    """Median step and communication times of a multi-rank CPU run (metrics.jsonl, rank 0)."""
    recs = [json.loads(l) for l in open(os.path.join(run_dir, "metrics.jsonl")) if l.strip()]
    recs = [r for r in recs if "step_ms" in r and "comm_wait_ms" in r]
    if len(recs) > 1:
        recs = recs[1:]  # the first window holds the warm-up
    if not recs:
        raise SystemExit(f"error: {run_dir}/metrics.jsonl has no multi-rank records (step_ms, comm_*): run it under mpirun")
    med = lambda k: statistics.median(r.get(k, 0.0) for r in recs)
    unhidden = max(0.0, med("comm_wait_ms") + med("comm_agree_ms") - med("comm_skew_ms"))
    return {"ranks": recs[-1].get("dist_ranks", 0), "step_ms": med("step_ms"), "in_backward_ms": med("comm_in_backward_ms"),
            "unhidden_ms": unhidden, "tokens_per_s": med("tokens_per_s")}


def self_test():
    ok = True
    def check(name, got, want, tol=1e-9):
        nonlocal ok
        good = abs(got - want) <= tol * max(1.0, abs(want))
        ok &= good
        print(f"{'ok  ' if good else 'FAIL'} {name}: {got:.6g} (want {want:.6g})")
    check("ring, 2 ranks, 1 GB at 1 GB/s, no latency: one pass of the data", ring_allreduce_s(1e9, 2, 1e9, 0), 1.0)
    check("ring, 64 ranks: 2*63/64 of the bytes", ring_allreduce_s(1e9, 64, 1e9, 0), 2 * 63 / 64)
    check("ring latency: 2(N-1) steps", ring_allreduce_s(0, 8, 1e9, 1e-6), 14e-6)
    check("one rank: no communication", ring_allreduce_s(1e9, 1, 1e9, 1e-6), 0.0)
    check("no communication: efficiency 1", efficiency(1.0, 0.0, 0.0), 1.0)
    check("nothing hidden: t_c / (t_c + t_ar)", efficiency(3.0, 1.0, 0.0), 0.75)
    check("fully hidden behind a long backward", efficiency(3.0, 1.0, 1.0), 1.0)
    check("hiding is bounded by backward (2/3 t_c)", efficiency(3.0, 5.0, 1.0), 3.0 / 6.0)
    t = min_tokens_for(0.8, 1.0, 1.0, 0.0, 1.0)  # eff = x / (x + 1) >= 0.8  <=>  x >= 4
    check("threshold search: x/(x+1) >= 0.8 at x = 4", t, 4.0, tol=2e-3)
    print("self-test", "passed" if ok else "FAILED")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--strata", default="build/strata", help="the binary whose `inspect` gives parameters and FLOPs")
    ap.add_argument("--configs", nargs="*", help="configs (default: experiments/*.yaml)")
    ap.add_argument("--gpus", default="8,16,32,64")
    ap.add_argument("--batches", default="1,4,16,64", help="sequences per GPU per step (each of the config's train.seq)")
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    ap.add_argument("--mfu", type=float, default=0.40)
    ap.add_argument("--overlap", type=float, default=0.8, help="share of the all-reduce that backward hides (at most its length)")
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--measured", help="a multi-rank CPU run directory (metrics.jsonl) for a sanity row")
    ap.add_argument("--models", help="only the models whose name matches this regular expression")
    ap.add_argument("--tables", default="models,allreduce,efficiency,threshold,global",
                    help="which tables (a comma list of: models, allreduce, efficiency, threshold, global)")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--self-test", action="store_true")
    a = ap.parse_args()
    if a.self_test:
        return self_test()
    gpus = [int(x) for x in a.gpus.split(",")]
    batches = [int(x) for x in a.batches.split(",")]
    flops_per_s = a.peak_tflops * 1e12 * a.mfu
    md = a.markdown
    say = print

    models = []  # name, params, train FLOPs/token, seq, global batch in tokens
    configs = a.configs if a.configs is not None else sorted(glob.glob("experiments/*.yaml"))
    for cfg in configs:
        try:
            p, fwd, seq = inspect(a.strata, cfg)
        except (OSError, subprocess.CalledProcessError) as e:
            raise SystemExit(f"error: `{a.strata} inspect {cfg}` failed ({e}); build strata first or pass --strata")
        models.append((os.path.basename(cfg)[:-5], p, 3.0 * fwd, seq, seq * config_batch(cfg)))
    for name, p, layers, d, gb in GPT3:  # Kaplan et al. 2020: forward 2N + 2 n_layer n_ctx d per token; training 3x
        models.append((name, p, 6.0 * p + 6.0 * layers * GPT3_SEQ * d, GPT3_SEQ, gb))

    if a.models:
        models = [m for m in models if re.search(a.models, m[0])]
    tables = set(a.tables.split(","))
    unknown = tables - {"models", "allreduce", "efficiency", "threshold", "global"}
    if unknown:
        raise SystemExit(f"error: --tables: unknown {sorted(unknown)}; valid: models, allreduce, efficiency, threshold, global")

    say(f"Assumed: H100 {a.peak_tflops:g} TFLOP/s bf16 peak at MFU {a.mfu:g} = {flops_per_s / 1e12:.0f} TFLOP/s per GPU; "
        f"backward hides {a.overlap:g} of the all-reduce (at most 2/3 of the step's compute); "
        f"links (busbw, latency per ring step): " + ", ".join(f"{n} {bw / GB:g} GB/s {al * 1e6:g} us" for n, bw, al in LINKS) + ".\n")

    if "models" in tables:
        say("Models: parameters, gradient bytes per step, training FLOPs per token (experiments/: 3 x `strata inspect`'s forward FLOPs at train.seq; GPT-3: 6N + 6 L T d)\n")
        rows = [(n, human(p), human(4 * p, "B"), human(2 * p, "B"), human(f), s, f"{f / (6 * p):.2f}") for n, p, f, s, _ in models]
        say(table(rows, ["model", "params", "grad fp32", "grad bf16", "train FLOP/token", "seq", "FLOP / 6N"], md))

    if "allreduce" in tables:
        say("Ring all-reduce time per step, ms (fp32 gradients; bf16 halves the bandwidth part)\n")
        rows = []
        for n, p, f, s, _ in models:
            for ln, bw, al in LINKS:
                rows.append([n, ln] + [ms(ring_allreduce_s(4 * p, g, bw, al)) for g in gpus])
        say(table(rows, ["model", "link"] + [f"N={g}" for g in gpus], md))

    if "efficiency" in tables:
        say(f"Efficiency t_c / (t_c + unhidden comm) at N={max(gpus)} (the latency term grows with N; the bandwidth term hardly does), "
            f"fp32 gradients, per-GPU batch in sequences of the model's seq; t_c = compute ms per step\n")
        rows = []
        for n, p, f, s, _ in models:
            for b in batches:
                tc = f * b * s / flops_per_s
                row = [n, b, ms(tc)]
                for ln, bw, al in LINKS:
                    row.append(f"{efficiency(tc, ring_allreduce_s(4 * p, max(gpus), bw, al), a.overlap):.2f}")
                rows.append(row)
        say(table(rows, ["model", "batch/GPU", "t_c ms"] + [ln for ln, _, _ in LINKS], md))

    if "threshold" in tables:
        say(f"Smallest per-GPU batch, in tokens per step, for efficiency >= {a.threshold:g}: fp32 / bf16 gradients "
            f"(in brackets: sequences of the model's seq, fp32)\n")
        rows = []
        for n, p, f, s, _ in models:
            for ln, bw, al in LINKS:
                row = [n, ln]
                for g in gpus:
                    t32 = min_tokens_for(a.threshold, f, ring_allreduce_s(4 * p, g, bw, al), a.overlap, flops_per_s)
                    t16 = min_tokens_for(a.threshold, f, ring_allreduce_s(2 * p, g, bw, al), a.overlap, flops_per_s)
                    row.append(f"{human(t32)} / {human(t16)} ({num(t32 / s)})")
                rows.append(row)
        say(table(rows, ["model", "link"] + [f"N={g}" for g in gpus], md))

    if "global" in tables:
        say(f"Efficiency at the model's own global batch (experiments/: train.batch x train.seq; GPT-3: its paper's batch) "
            f"split over N GPUs, fp32 gradients: data parallelism pays while this stays >= {a.threshold:g}\n")
        rows = []
        for n, p, f, s, gb in models:
            for ln, bw, al in LINKS:
                row = [n, human(gb), ln]
                for g in gpus:
                    tc = f * gb / g / flops_per_s
                    row.append(f"{efficiency(tc, ring_allreduce_s(4 * p, g, bw, al), a.overlap):.2f}")
                rows.append(row)
        say(table(rows, ["model", "global tokens", "link"] + [f"N={g}" for g in gpus], md))

    if a.measured:
        m = measured_row(a.measured)
        eff = (m["step_ms"] - m["unhidden_ms"]) / m["step_ms"]
        p, _, _ = inspect(a.strata, os.path.join(a.measured, "config.yaml"))
        comm_s = (m["in_backward_ms"] + m["unhidden_ms"]) / 1e3
        busbw = ring_allreduce_s(4 * p, m["ranks"], 1.0, 0.0) / comm_s if comm_s > 0 else math.inf
        say(f"Sanity row, measured on this machine's CPUs ({m['ranks']} ranks, {a.measured}, {human(p)} parameters, "
            f"{human(4 * p, 'B')} of fp32 gradients): step {m['step_ms']:.1f} ms, all-reduce work inside backward "
            f"{m['in_backward_ms']:.2f} ms, unhidden communication {m['unhidden_ms']:.2f} ms -> efficiency {eff:.3f} "
            f"({m['tokens_per_s']:.0f} tokens/s); the ring formula with no latency matches that communication at an "
            f"effective bus bandwidth of {busbw / GB:.2f} GB/s\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
