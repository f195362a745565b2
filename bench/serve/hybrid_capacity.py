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
e.g. `strata init CONFIG -o C.h5`), then run this once per server. No timing is asserted.

--serve does all of that for the two configs on one machine: `strata init` of each (with --override
applied to both: the default shrinks the 1B pair by 8 in width, d_model 256, so that prefilling 4k
contexts takes minutes on a CPU; the layer patterns, heads, state size and hence the ratio of cache
bytes per sequence stay those of the 1B pair), then for each model a `strata serve` with the same
--cache-mib, --requests of --context tokens each (default: the model's capacity + 2, so that some
wait), the peak of running sequences from /metrics and the tokens/s. The hybrid's --max-running is
its capacity in the budget (its state slots, one per running sequence plus a quarter for prefix
snapshots, come out of the same budget); the transformer needs no slots.
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


def context_requests(n, context, output, vocab):
    """n requests of `context` tokens each (random ids, seed 0), `output` of them generated, one client
    each so that all are submitted at once."""
    import random
    rng = random.Random(0)
    return [{"id": i, "client": i, "max_tokens": output,
             "prompt": [rng.randrange(3, vocab) for _ in range(context - output)]} for i in range(n)]


def measure(a):
    import loadgen
    import stats
    a.requests = a.requests or 64
    reqs = context_requests(a.requests, a.context, 16, a.vocab)
    with loadgen.PeakRunning(a.measure) as peak:
        recs = loadgen.run(a.measure, reqs, a.model, timeout=3600)
    s = stats.summarize(recs)
    print(json.dumps({"url": a.measure, "context": a.context, "requests": a.requests, "peak_running": peak.peak,
                      "total_tok_s": s.get("total_tok_s"), "errors": s["errors"], "wall_s": s.get("wall_s")}))


def server_capacity(m, context, budget, page):
    """(max_running, sequences) as `strata serve` splits --cache-mib (src/serve/engine_factory.cpp):
    max_running + ceil(max_running / 4) state slots, the rest pages of `page` tokens, and the
    engine's admission watermark of 1 % of the pages."""
    pages_per_seq = math.ceil(context / page)
    page_bytes = m["kv_bytes_per_token"] * page
    best = (1, 0)
    for running in range(1, 100000):
        slots = running + (running + 3) // 4 if m["state_bytes_per_seq"] else 0
        left = budget - slots * m["state_bytes_per_seq"]
        if left < 0:
            break
        pages = left // page_bytes if page_bytes else 1 << 40
        fits = (pages - pages // 100) // pages_per_seq if page_bytes else running
        if min(running, fits) > best[1]:
            best = (running, min(running, fits))
        if page_bytes and fits < running:
            break
    return best


def serve_and_measure(a):
    import loadgen
    import stats
    import socket
    import time
    work = a.workdir
    os.makedirs(work, exist_ok=True)
    budget = a.cache_mib << 20
    rows = []
    for cfg in a.configs:
        name = os.path.splitext(os.path.basename(cfg))[0]
        ckpt = os.path.join(work, name + ".h5")
        if not os.path.exists(ckpt) or os.path.getmtime(ckpt) < os.path.getmtime(cfg):
            subprocess.run([a.strata, "init", cfg, *a.override, "-o", ckpt], check=True)
        m = inspect(a.strata, ckpt, a.context)
        m["config"] = os.path.relpath(cfg, ROOT)
        paper = capacity(m, a.context, budget, a.page)["sequences"]
        running, fits = server_capacity(m, a.context, budget, a.page)
        n = a.requests or fits + 2
        with socket.socket() as sk:
            sk.bind(("127.0.0.1", 0))
            port = sk.getsockname()[1]
        cmd = [a.strata, "serve", "--ckpt", ckpt, "--port", str(port), "--model-name", "model", "--quiet",
               "--cache-mib", str(a.cache_mib), "--max-running", str(running if m["state_bytes_per_seq"] else 4096),
               "--max-queue", str(4 * n), "--max-prompt-tokens", str(a.context), "--max-tokens", str(a.output),
               "--max-context", str(a.context), "--page-size", str(a.page), "--threads", str(a.threads),
               "--http-threads", str(n + 8), "--timeout-s", "36000"]
        print(f"[{name}] {' '.join(cmd)}", file=sys.stderr)
        log = open(os.path.join(work, name + ".log"), "w")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                env=dict(os.environ, OMP_NUM_THREADS=str(a.threads)))
        url = f"http://127.0.0.1:{port}"
        try:
            if not loadgen.wait_ready(url, timeout=600, proc=proc):
                raise SystemExit(f"{name}: the server did not start (see {log.name})")
            reqs = context_requests(n, a.context, a.output, a.vocab)
            t0 = time.time()
            with loadgen.PeakRunning(url) as peak:
                recs = loadgen.run(url, reqs, "model", timeout=36000)
            wall = time.time() - t0
        finally:
            proc.terminate()
            proc.wait(60)
            log.close()
        s = stats.summarize(recs)
        out_tokens = sum(r.get("tokens", 0) for r in recs)
        gauge = max(peak.peak.values()) if peak.peak else None
        rows.append(dict(m, name=name, on_paper=paper, server_capacity=fits, max_running=running, requests=n,
                         peak_running=gauge, errors=s["errors"], wall_s=wall,
                         tok_s=(n * (a.context - a.output) + out_tokens) / wall, out_tok_s=out_tokens / wall))
        first_error = next((r["error"] for r in recs if r.get("error")), None)
        print(f"{name}: peak running {gauge}, {s['errors']} errors, {wall:.0f} s"
              + (f"; first error: {first_error}" if first_error else ""), file=sys.stderr)
    h, t = rows
    print(f"### Hybrid vs transformer on a running server: {a.context}-token contexts in {a.cache_mib} MiB of "
          f"cache (fp32, pages of {a.page}), {a.threads} threads\n")
    print("| model | params | KV B/token | state B/seq | sequences on paper | server's split | requests "
          "| peak running (/metrics) | errors | wall (s) | tokens/s (prompt + output) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['config']} ({' '.join(a.override)}) | {r['params'] / 1e6:.1f}M | {r['kv_bytes_per_token']:,} "
              f"| {r['state_bytes_per_seq']:,} | {r['on_paper']} | {r['server_capacity']} | {r['requests']} "
              f"| {r['peak_running']:.0f} | {r['errors']} | {r['wall_s']:.0f} | {r['tok_s']:,.0f} |")
    ratio = h["peak_running"] / t["peak_running"] if t["peak_running"] else float("inf")
    print(f"\nhybrid / transformer: {ratio:.2f}x the concurrent sequences measured (goal >= 4x), "
          f"{h['tok_s'] / t['tok_s']:.2f}x the tokens/s, at {h['params'] / t['params']:.3f}x the parameters\n")
    print(json.dumps({"context": a.context, "cache_mib": a.cache_mib, "rows": rows, "ratio": ratio}))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("configs", nargs="*", default=[os.path.join(ROOT, "experiments/serving/jamba_1b.yaml"),
                                                   os.path.join(ROOT, "experiments/serving/transformer_1b.yaml")])
    ap.add_argument("--strata", default=os.path.join(ROOT, "build", "strata"))
    ap.add_argument("--context", type=int, default=4096)
    ap.add_argument("--budget-gib", type=float, default=16.0, help="cache budget (default 16 GiB)")
    ap.add_argument("--page", type=int, default=16, help="KV page size in tokens (default 16)")
    ap.add_argument("--measure", metavar="URL", help="measure a running server instead (see above)")
    ap.add_argument("--requests", type=int,
                    help="requests submitted at once (--measure: default 64; --serve: each model's capacity + 2)")
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--model", default="model")
    ap.add_argument("--serve", action="store_true", help="init, serve and measure both configs (see above)")
    ap.add_argument("--override", action="append",
                    help="--serve: config override for both models (default: model.d_model=256 model.mlp.hidden=704)")
    ap.add_argument("--cache-mib", type=int, default=256, help="--serve: each server's --cache-mib (default 256)")
    ap.add_argument("--output", type=int, default=256,
                    help="--serve: output tokens per request (default 256: long enough that the first request "
                         "admitted is still decoding when the last is admitted, so the peak shows memory, not "
                         "prefill speed)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="--serve: each server's --threads")
    ap.add_argument("--workdir", default=os.path.join(os.environ.get("STRATA_CACHE", os.path.expanduser(
        "~/.cache/strata")), "bench-capacity"), help="--serve: checkpoints and logs")
    a = ap.parse_args(argv)
    if a.measure:
        return measure(a)
    if a.serve:
        a.override = a.override if a.override is not None else ["model.d_model=256", "model.mlp.hidden=704"]
        return serve_and_measure(a)
    if len(a.configs) != 2:
        ap.error("give two configs: HYBRID.yaml TRANSFORMER.yaml")
    return on_paper(a)


if __name__ == "__main__":
    sys.exit(main())
