#!/usr/bin/env python3
"""Hybrid vs transformer at equal parameters: how many sequences of a given context fit in a fixed
cache budget (issue 13's goal: the Jamba-style hybrid serves >= 4x the transformer's sequences at 4k).

  hybrid_capacity.py [--strata build/strata] [--context 4096] [--budget-gib 16] [--page 16]
                     [HYBRID.yaml TRANSFORMER.yaml]        (default: experiments/serving/{jamba,transformer}_1b.yaml)
  hybrid_capacity.py --measure URL [--context N]            (the hook for a running `strata serve`)

On paper, from `strata inspect` (parameters, KV bytes per token of the attention layers, fixed
SSM/conv state bytes per sequence of the Mamba layers, all fp32 as strata stores them):
  bytes per sequence = KV bytes/token x context (rounded up to whole pages of --page tokens)
                       + state bytes/sequence
  sequences          = floor(budget / bytes per sequence)
Prints a markdown table and one JSON line.

--measure submits --requests streaming requests of --context tokens (prompt = context - 16, 16 output
tokens) at once to URL, polls GET /metrics while they run, and reports the largest value of every
gauge whose name contains "running" or "requests_processing" (running sequences; loadgen.PeakRunning), the requests' total tokens/s and
their errors: start the server with the model and cache budget to compare (a checkpoint of each config,
e.g. `strata train CONFIG train.steps=1`), then run this once per server. No timing is asserted.
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)


def inspect(strata, config, context):
    out = subprocess.run([strata, "inspect", config, "--context", str(context)], capture_output=True, text=True,
                         check=True).stdout
    params = int(re.search(r"^parameters: (\d+)", out, re.M).group(1))
    m = re.search(r"decode cache: (\d+) bytes per token \(KV\) \+ (\d+) bytes per sequence", out)
    pattern = re.search(r"^pattern .*= '([^']*)'", out, re.M).group(1)
    return {"config": os.path.relpath(config, ROOT), "params": params, "kv_bytes_per_token": int(m.group(1)),
            "state_bytes_per_seq": int(m.group(2)), "attention_layers": pattern.count("*"),
            "mamba_layers": pattern.count("M"), "layers": len(pattern)}


def capacity(m, context, budget, page):
    tokens = math.ceil(context / page) * page if m["kv_bytes_per_token"] else 0
    per_seq = m["kv_bytes_per_token"] * tokens + m["state_bytes_per_seq"]
    return dict(m, bytes_per_seq=per_seq, sequences=budget // per_seq if per_seq else None)


def on_paper(a):
    budget = int(a.budget_gib * 2**30)
    rows = [capacity(inspect(a.strata, c, a.context), a.context, budget, a.page) for c in a.configs]
    h, t = rows
    ratio = h["sequences"] / t["sequences"] if t["sequences"] else float("inf")
    print(f"### Hybrid vs transformer at equal parameters: sequences of {a.context} tokens in {a.budget_gib:g} GiB "
          f"of cache (fp32, pages of {a.page})\n")
    print("| model | params | sublayers (attention / Mamba) | KV B/token | state B/seq | MiB per sequence | sequences |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['config']} | {r['params'] / 1e9:.3f}B | {r['layers']} ({r['attention_layers']} / {r['mamba_layers']}) "
              f"| {r['kv_bytes_per_token']:,} | {r['state_bytes_per_seq']:,} | {r['bytes_per_seq'] / 2**20:,.1f} "
              f"| {r['sequences']:,} |")
    print(f"\nhybrid / transformer: {ratio:.2f}x the sequences (goal >= 4x) at "
          f"{h['params'] / t['params']:.3f}x the parameters\n")
    print(json.dumps({"context": a.context, "budget_bytes": budget, "page": a.page, "hybrid": h, "transformer": t,
                      "ratio": ratio}))


def measure(a):
    import loadgen
    import stats
    import random
    rng = random.Random(0)
    reqs = [{"id": i, "client": i, "max_tokens": 16,
             "prompt": [rng.randrange(3, a.vocab) for _ in range(a.context - 16)]} for i in range(a.requests)]
    with loadgen.PeakRunning(a.measure) as peak:
        recs = loadgen.run(a.measure, reqs, a.model, timeout=3600)
    s = stats.summarize(recs)
    print(json.dumps({"url": a.measure, "context": a.context, "requests": a.requests, "peak_running": peak.peak,
                      "total_tok_s": s.get("total_tok_s"), "errors": s["errors"], "wall_s": s.get("wall_s")}))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("configs", nargs="*", default=[os.path.join(ROOT, "experiments/serving/jamba_1b.yaml"),
                                                   os.path.join(ROOT, "experiments/serving/transformer_1b.yaml")])
    ap.add_argument("--strata", default=os.path.join(ROOT, "build", "strata"))
    ap.add_argument("--context", type=int, default=4096)
    ap.add_argument("--budget-gib", type=float, default=16.0, help="cache budget (default 16 GiB)")
    ap.add_argument("--page", type=int, default=16, help="KV page size in tokens (default 16)")
    ap.add_argument("--measure", metavar="URL", help="measure a running server instead (see above)")
    ap.add_argument("--requests", type=int, default=64, help="--measure: requests submitted at once")
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--model", default="model")
    a = ap.parse_args(argv)
    if a.measure:
        return measure(a)
    if len(a.configs) != 2:
        ap.error("give two configs: HYBRID.yaml TRANSFORMER.yaml")
    return on_paper(a)


if __name__ == "__main__":
    sys.exit(main())
