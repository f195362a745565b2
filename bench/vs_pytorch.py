#!/usr/bin/env python3
"""strata vs plain PyTorch (eager) on the same configs, on this machine, in one run.

For each config, runs build/bench/bench_model (strata) and `python -m torch_ref.bench` (the same
architecture in PyTorch, python/torch_ref/) with the same batch, sequence length, step counts and
thread count, and prints training tokens/s and decode tokens/s of both with their ratio
(strata / torch: above 1 means strata is faster).

  bench/vs_pytorch.sh [configs...] [options]          # builds bench_model, then runs this
  python bench/vs_pytorch.py [configs...] [options]   # with the venv of python/requirements-bench.txt

--check first confirms, per config, that the two implementations compute the same function (the
PyTorch model loads strata's weights and compares loss, parameter gradients and decode logits:
python/torch_ref/grads.py, the oracle tests/test_grad_parity_torch.cpp also uses).

--device cuda runs both on the GPU (strata with train.device=cuda, PyTorch eager on cuda, both fp32
without TF32). --decode-batch 1,64 decodes once per batch size and adds a decode table with the
memory-bandwidth bound of each (bench_model: parameter + cache bytes a step must read, over the
device's peak bandwidth or --hbm-gbs) and the share of it each side reaches.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIGS = ["experiments/jamba_small.yaml", "experiments/quickstart.yaml"]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("configs", nargs="*", default=DEFAULT_CONFIGS, help=f"default: {' '.join(DEFAULT_CONFIGS)}")
    ap.add_argument("--bench-model", default=os.path.join(ROOT, "build", "bench", "bench_model"),
                    help="the strata executable (default: build/bench/bench_model)")
    ap.add_argument("--python", default=sys.executable, help="python with torch (default: this one)")
    ap.add_argument("--batch", type=int, default=0, help="training batch (default: each config's train.batch)")
    ap.add_argument("--seq", type=int, default=0, help="training sequence length (default: train.seq)")
    ap.add_argument("--train-steps", type=int, default=10)
    ap.add_argument("--warmup-steps", type=int, default=2)
    ap.add_argument("--decode-tokens", type=int, default=64)
    ap.add_argument("--decode-batch", default="4", help="sequences decoded at once; a comma-separated list "
                    "(e.g. 1,64) runs one decode per size")
    ap.add_argument("--decode-warmup", type=int, default=4)
    ap.add_argument("--prefill", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0, help="threads for both (default: os.cpu_count())")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where both sides run")
    ap.add_argument("--hbm-gbs", type=float, default=0,
                    help="memory bandwidth for the decode bound (default: the GPU's peak on cuda; none on cpu)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per side; the median is reported")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="config override applied to both sides (repeatable), e.g. --set model.repeat=2")
    ap.add_argument("--check", action="store_true", help="verify both compute the same function first")
    ap.add_argument("--only", choices=["strata", "torch"], help="run one side only")
    ap.add_argument("--json", metavar="FILE", help="also write every raw result to FILE")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per run")
    return ap.parse_args(argv)


def run_json(cmd, env, timeout):
    """Runs cmd, echoes its stderr on failure, returns the last JSON line of its stdout."""
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        sys.stderr.write(p.stderr)
        raise RuntimeError(f"{' '.join(cmd)} exited with {p.returncode}")
    for line in reversed(p.stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"{' '.join(cmd)} printed no JSON line:\n{p.stdout}")


def timing_args(a):
    out = ["--train-steps", a.train_steps, "--warmup-steps", a.warmup_steps, "--decode-tokens", a.decode_tokens,
           "--decode-batch", ",".join(map(str, a.decode_batches)), "--decode-warmup", a.decode_warmup,
           "--prefill", a.prefill]
    if a.batch:
        out += ["--batch", a.batch]
    if a.seq:
        out += ["--seq", a.seq]
    return [str(x) for x in out]


def strata_args(a):
    """What only strata is told: its device switch is a config key, its bandwidth an option."""
    out = ["train.device=cuda"] if a.device == "cuda" else []
    return out + (["--hbm-gbs", str(a.hbm_gbs)] if a.hbm_gbs > 0 else [])


def envs(a):
    threads = a.threads or os.cpu_count()
    base = dict(os.environ)
    strata = dict(base, OMP_NUM_THREADS=str(threads))
    torch = dict(base, PYTHONPATH=os.pathsep.join(filter(None, [os.path.join(ROOT, "python"),
                                                                base.get("PYTHONPATH")])))
    return threads, strata, torch


def check(a, cfg, strata_env, torch_env):
    with tempfile.TemporaryDirectory(prefix="strata-check-") as d:
        cmd = [a.bench_model, cfg, *a.overrides, "--batch", "2", "--seq", "37", "--decode-batch", "2", "--prefill",
               "5", "--dump", d]  # strata's reference outputs come from its cpu path
        p = subprocess.run(cmd, cwd=ROOT, env=strata_env, capture_output=True, text=True, timeout=a.timeout)
        if p.returncode != 0:
            sys.stderr.write(p.stderr)
            return False
        p = subprocess.run([a.python, "-m", "torch_ref.bench", cfg, *a.overrides, "--check", d, "--device", a.device],
                           cwd=ROOT, env=torch_env, capture_output=True, text=True, timeout=a.timeout)
        sys.stdout.write("".join(f"  {line}\n" for line in p.stdout.strip().splitlines()))
        sys.stderr.write(p.stderr)
        return p.returncode == 0


def median_of(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def fmt_tps(x):
    return "-" if x is None else f"{x:,.0f}"


def fmt_ratio(s, t):
    return "-" if not s or not t else f"{s / t:.2f}x"


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def decode_of(runs, batch, key):
    """Median of `key` over the runs' decode rows for one batch size."""
    vals = [d[key] for r in runs for d in r.get("decode", []) if d["batch"] == batch and d.get(key) is not None]
    return statistics.median(vals) if vals else None


def print_decode_table(a, results):
    print()
    print("| config | decode batch | strata tok/s | torch tok/s | ratio | bandwidth bound tok/s | strata % of bound | "
          "torch % of bound | MB read per step |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        name = os.path.splitext(os.path.basename(r["config"]))[0]
        for b in a.decode_batches:
            sd, td = decode_of(r["strata"], b, "tokens_per_s"), decode_of(r["torch"], b, "tokens_per_s")
            bound, mb = decode_of(r["strata"], b, "bound_tokens_per_s"), decode_of(r["strata"], b, "bytes_per_step")
            pct = lambda x: "-" if not x or not bound else f"{100 * x / bound:.1f}%"
            print(f"| {name} | {b} | {fmt_tps(sd)} | {fmt_tps(td)} | {fmt_ratio(sd, td)} | {fmt_tps(bound)} | "
                  f"{pct(sd)} | {pct(td)} | {'-' if mb is None else f'{mb / 1e6:.2f}'} |")
    bw = next((x["hbm_gbs"] for r in results for x in r["strata"] if x.get("hbm_gbs")), None)
    print(f"\nbound = decode batch x memory bandwidth ({'-' if bw is None else f'{bw:,.0f} GB/s'}) / bytes a step must "
          "read (all fp32 parameters + each sequence's KV entries and SSM/conv state; writes and activations not "
          "counted; an MoE counts every expert).")


def main(argv=None):
    a = parse_args(argv)
    try:
        a.decode_batches = [int(x) for x in a.decode_batch.split(",")]
    except ValueError:
        a.decode_batches = []
    if not a.decode_batches or min(a.decode_batches) < 1:
        sys.exit(f"--decode-batch: expected positive integers separated by commas, got '{a.decode_batch}'")
    threads, strata_env, torch_env = envs(a)
    if a.only != "torch" and not os.access(a.bench_model, os.X_OK):
        sys.exit(f"{a.bench_model} not found: build it first (bench/vs_pytorch.sh does: "
                 "cmake --build build --target bench_model)")
    targs = timing_args(a)
    results, failed_checks = [], []
    for cfg in a.configs:
        if a.check and a.only is None:
            print(f"check {cfg}:")
            if not check(a, cfg, strata_env, torch_env):
                failed_checks.append(cfg)
        row = {"config": cfg, "strata": [], "torch": []}
        for _ in range(a.repeat):
            if a.only != "torch":
                row["strata"].append(run_json([a.bench_model, cfg, *a.overrides, *targs, *strata_args(a)], strata_env,
                                              a.timeout))
            if a.only != "strata":
                row["torch"].append(run_json([a.python, "-m", "torch_ref.bench", cfg, *a.overrides, *targs,
                                              "--threads", str(threads), "--device", a.device], torch_env, a.timeout))
        results.append(row)
        s, t = row["strata"], row["torch"]
        print(f"{cfg}: strata train {fmt_tps(median_of(s, 'train_tokens_per_s'))} decode "
              f"{fmt_tps(median_of(s, 'decode_tokens_per_s'))} | torch train "
              f"{fmt_tps(median_of(t, 'train_tokens_per_s'))} decode {fmt_tps(median_of(t, 'decode_tokens_per_s'))}",
              file=sys.stderr)

    torch_ver = next((r["torch"][0].get("torch") for r in results if r["torch"]), "-")
    print()
    gpu = next((x.get("device_name") for r in results for x in r["strata"] + r["torch"]
                if x.get("device") == "cuda"), None)
    where = f"GPU {gpu} (both sides on cuda, fp32, no TF32); host " if gpu else ""
    print(f"machine: {where}{cpu_name()}, {os.cpu_count()} CPUs; threads {threads}; torch {torch_ver}; "
          f"{time.strftime('%Y-%m-%d')}")
    shapes = ", ".join(f"{os.path.splitext(os.path.basename(r['config']))[0]} {x['batch']}x{x['seq']}"
                       for r in results for x in (r["strata"] or r["torch"])[:1])
    print(f"train: batch x seq: {shapes}; {a.train_steps} timed steps after {a.warmup_steps} warm-up; "
          f"decode: batch {a.decode_batches[0]}, {a.decode_tokens} timed tokens after a {a.prefill}-token prefill "
          f"and {a.decode_warmup} warm-up steps; "
          f"median of {a.repeat}")
    if a.overrides:
        print(f"overrides (both sides): {' '.join(a.overrides)}")
    print()
    print("| config | params | strata train tok/s | torch train tok/s | ratio | strata decode tok/s | "
          "torch decode tok/s | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        s, t = r["strata"], r["torch"]
        st, tt = median_of(s, "train_tokens_per_s"), median_of(t, "train_tokens_per_s")
        sd, td = median_of(s, "decode_tokens_per_s"), median_of(t, "decode_tokens_per_s")
        ps, pt = (s[0]["params"] if s else None), (t[0]["params"] if t else None)
        params = f"{(ps or pt) / 1e6:.2f}M" if (ps or pt) else "-"
        if ps and pt and ps != pt:
            params += f" (torch {pt / 1e6:.2f}M!)"
        name = os.path.splitext(os.path.basename(r["config"]))[0]
        print(f"| {name} | {params} | {fmt_tps(st)} | {fmt_tps(tt)} | {fmt_ratio(st, tt)} | {fmt_tps(sd)} | "
              f"{fmt_tps(td)} | {fmt_ratio(sd, td)} |")
    print("\nratio = strata / torch (above 1: strata is faster).")
    if len(a.decode_batches) > 1 or any(d.get("bound_tokens_per_s") for r in results for x in r["strata"]
                                        for d in x.get("decode", [])):
        print_decode_table(a, results)
    mismatched = [r["config"] for r in results if r["strata"] and r["torch"]
                  and r["strata"][0]["params"] != r["torch"][0]["params"]]
    if mismatched:
        print(f"WARNING: parameter counts differ for {', '.join(mismatched)}: not the same architecture")
    if failed_checks:
        print(f"WARNING: --check failed for {', '.join(failed_checks)}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"threads": threads, "args": vars(a), "results": results}, f, indent=1)
    return 1 if (mismatched or failed_checks) else 0


if __name__ == "__main__":
    sys.exit(main())
