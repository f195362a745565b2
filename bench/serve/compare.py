#!/usr/bin/env python3
"""Runs the serving workloads against each peer in turn and prints one side-by-side table per workload.
Called by bench/serve/run.sh (which builds and prepares everything); see bench/README.md "bench/serve".

  compare.py --model-dir DIR [--strata build/strata --ckpt model.h5] [--llama-server BIN]
             [--scale cpu|full] [--threads T] [--only NAME ...] [--out DIR]

Columns (each server started alone on a free port, given the same threads, then stopped):
  strata          `strata serve --ckpt CKPT --port P --engine batch --threads T --max-running NP
                  --cache-mib (llama-server's KV bytes) ...` (each flag only if the binary has it), when
                  the binary has `serve`
  llama.cpp F32   llama-server -m model-f32.gguf, --parallel NP slots of continuous batching,
                  each slot its own KV stream of the workloads' longest sequence (-c NP x that), F32 KV;
                  not --kv-unified: with one unified pool every decode step attends over all the
                  cells in use, and 256 full-scale rollouts crawled at 92 tok/s
  llama.cpp Q8_0  the same with model-q8_0.gguf
  transformers    bench/serve/hf_peer.py: model.generate in process (no server)
"""
import argparse
import json
import os
import re
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import loadgen  # noqa: E402
import workloads  # noqa: E402

PEERS = ["strata", "llama.cpp F32", "llama.cpp Q8_0", "transformers"]
# (row label, key, format, better): better = "low" / "high" says which way the strata ratio is good.
ROWS = {
    "agentic": [("TTFT p50 (ms)", "ttft_p50_ms", "{:,.0f}", "low"), ("TTFT p99 (ms)", "ttft_p99_ms", "{:,.0f}", "low"),
                ("inter-token p50 (ms)", "itl_p50_ms", "{:,.1f}", "low"),
                ("inter-token p99 (ms)", "itl_p99_ms", "{:,.1f}", "low"),
                ("stream tok/s p50", "stream_tok_s_p50", "{:,.1f}", "high")],
    "interactive": [("TTFT p50 (ms)", "ttft_p50_ms", "{:,.0f}", "low"), ("TTFT p99 (ms)", "ttft_p99_ms", "{:,.0f}", "low"),
                    ("tok/s per stream p50", "stream_tok_s_p50", "{:,.1f}", "high"),
                    ("tok/s per stream min", "stream_tok_s_min", "{:,.1f}", "high"),
                    ("inter-token p99 (ms)", "itl_p99_ms", "{:,.1f}", "low"),
                    ("total tok/s", "total_tok_s", "{:,.1f}", "high")],
    "rollouts": [("total tok/s", "total_tok_s", "{:,.1f}", "high"), ("wall (s)", "wall_s", "{:,.1f}", "low"),
                 ("output tokens", "output_tokens", "{:,}", None), ("TTFT p50 (ms)", "ttft_p50_ms", "{:,.0f}", "low"),
                 ("peak running (/metrics)", "peak_running", "{:,.0f}", None),
                 ("errors / short", None, None, None)],
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def has_serve(strata):
    if not strata or not os.access(strata, os.X_OK):
        return False
    # `strata serve --help` is no test: CLI11 prints the top-level help for an unknown subcommand too.
    p = subprocess.run([strata, "--help"], capture_output=True, text=True)
    return any(line.split()[:1] == ["serve"] for line in p.stdout.splitlines() if line.startswith("  "))


def kv_bytes_per_token(model):
    """fp32 K and V of every layer of the HF Llama in model["hf"]."""
    with open(os.path.join(model["hf"], "config.json")) as f:
        c = json.load(f)
    hd = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
    return c["num_hidden_layers"] * 2 * c.get("num_key_value_heads", c["num_attention_heads"]) * hd * 4


def server_command(peer, a, port, n_parallel, ctx):
    if peer == "strata":
        # The batch engine with llama-server's settings where strata has the knob (main's `strata serve`):
        # NP sequences at once, connections for all of them, a KV pool of the same bytes as
        # llama-server's (NP x ctx tokens, fp32), no queue limit or timeout in the way of the workloads.
        help_text = subprocess.run([a.strata, "serve", "--help"], capture_output=True, text=True).stdout
        want = [("--engine", "batch"), ("--host", "127.0.0.1"), ("--model-name", "model"), ("--threads", a.threads),
                ("--http-threads", n_parallel + 8), ("--max-running", n_parallel), ("--max-queue", 4 * n_parallel),
                ("--cache-mib", -(-n_parallel * ctx * kv_bytes_per_token(a.model) // 2**20) + 16),
                ("--timeout-s", 7200), ("--quiet", None)]
        cmd = [a.strata, "serve", "--ckpt", a.ckpt, "--port", str(port)]
        for flag, v in want:
            if flag == "--engine" and not re.search(r"--engine.*\bbatch\b", help_text):
                continue  # a binary with the serial engine only
            if re.search(r"\s" + re.escape(flag) + r"\b", help_text):
                cmd += [flag] if v is None else [flag, str(v)]
        return cmd + a.strata_arg
    gguf = a.model["gguf_f32"] if peer.endswith("F32") else a.model["gguf_q8_0"]
    return [a.llama_server, "-m", gguf, "--host", "127.0.0.1", "--port", str(port), "-t", str(a.threads),
            "-tb", str(a.threads), "-c", str(n_parallel * ctx), "-np", str(n_parallel),
            "-ctk", "f32", "-ctv", "f32", "--no-webui", "--metrics", "-a", "model"] + a.llama_arg


def run_server_peer(peer, a, scale, log_dir, results):
    ctx = workloads.max_context(scale) + 16
    n_parallel = max(w["clients"] for w in workloads.SCALES[scale].values())
    port = free_port()
    cmd = server_command(peer, a, port, n_parallel, ctx)
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    log = open(os.path.join(log_dir, peer.replace(" ", "_") + ".log"), "w")
    log.write(" ".join(cmd) + "\n")
    log.flush()
    print(f"[{peer}] {' '.join(cmd)}", file=sys.stderr)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        if not loadgen.wait_ready(url, timeout=600, proc=proc):
            return f"{peer}: column missing: the server did not become ready (see {log.name})"
        for w in a.workload:
            t0 = time.time()
            out = subprocess.run([sys.executable, os.path.join(HERE, "loadgen.py"), "--url", url, "--workload", w,
                                  "--scale", scale, "--label", peer, "--vocab", str(a.model["vocab"]), "--model", "model"],
                                 capture_output=True, text=True)
            sys.stderr.write(out.stderr)
            line = next((l for l in reversed(out.stdout.splitlines()) if l.startswith("{")), None)
            if line:
                r = json.loads(line)
                r["seconds"] = time.time() - t0
                results.setdefault(w, {})[peer] = r
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def run_hf_peer(a, scale, results):
    cmd = [sys.executable, os.path.join(HERE, "hf_peer.py"), a.model["hf"], "--scale", scale,
           "--threads", str(a.threads), "--batch", str(a.hf_batch)]
    for w in a.workload:
        cmd += ["--workload", w]
    print(f"[transformers] {' '.join(cmd)}", file=sys.stderr)
    out = subprocess.run(cmd, capture_output=True, text=True)
    sys.stderr.write("\n".join(l for l in out.stderr.splitlines() if "Loading weights" not in l) + "\n")
    if out.returncode != 0:
        return f"transformers: failed (exit {out.returncode}): {out.stderr.strip().splitlines()[-1:]}"
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            results.setdefault(r["workload"], {})["transformers"] = r


def cell(r, key, fmt):
    if r is None:
        return "—"
    if key is None:
        return f"{r.get('errors', 0)} / {r.get('short', 0)}"
    v = r.get(key)
    return "—" if v is None else fmt.format(v)


def ratio(s, p, key, better):
    if not s or not p or key is None or better is None or not s.get(key) or not p.get(key):
        return "—"
    return f"{s[key] / p[key]:.3g}x"


def table(w, res, peers):
    refs = [p for p in ("llama.cpp F32", "llama.cpp Q8_0", "transformers") if p in peers]
    head = ["", *peers] + [f"strata / {p}" for p in refs]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for label, key, fmt, better in ROWS[w]:
        row = [label + ("" if better is None else " ↓" if better == "low" else " ↑")]
        row += [cell(res.get(p), key, fmt) for p in peers]
        row += [ratio(res.get("strata"), res.get(p), key, better) for p in refs]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True, help="bench/serve/make_model.py's output (model.json)")
    ap.add_argument("--strata", help="the strata binary (its column is left empty without `serve`)")
    ap.add_argument("--ckpt", help="what strata serves (default: the HF directory)")
    ap.add_argument("--strata-arg", action="append", default=[], help="extra argument for strata serve")
    ap.add_argument("--llama-server", help="llama.cpp's llama-server (bench/serve/build_llama_server.sh)")
    ap.add_argument("--llama-arg", action="append", default=[], help="extra argument for llama-server")
    ap.add_argument("--scale", default="cpu", choices=list(workloads.SCALES))
    ap.add_argument("--full", action="store_true", help="= --scale full")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--hf-batch", type=int, default=32, help="transformers' static batch for the rollouts")
    ap.add_argument("--workload", action="append", choices=workloads.WORKLOADS)
    ap.add_argument("--only", action="append", choices=PEERS, help="run only these peers (repeatable)")
    ap.add_argument("--merge", metavar="RESULTS_JSON", action="append", default=[],
                    help="also show the peers of an earlier run's results.json that this run leaves out")
    ap.add_argument("--no-run", action="store_true", help="run nothing: print the tables of the --merge files")
    ap.add_argument("--out", default=None, help="where logs and results.json go (default: MODEL_DIR/results)")
    a = ap.parse_args(argv)
    a.workload = a.workload or workloads.WORKLOADS
    scale = "full" if a.full else a.scale
    with open(os.path.join(a.model_dir, "model.json")) as f:
        a.model = json.load(f)
    a.ckpt = a.ckpt or a.model["hf"]
    out = a.out or os.path.join(a.model_dir, "results")
    os.makedirs(out, exist_ok=True)
    peers = [] if a.no_run else a.only or PEERS
    notes, results = [], {}
    for path in a.merge:
        with open(path) as f:
            old = json.load(f)
        for w, by_peer in old["results"].items():
            for p, r in by_peer.items():
                if p not in peers:
                    results.setdefault(w, {})[p] = r
        notes.append(f"merged from {path} (scale {old['scale']}, {old['threads']} threads): "
                     + ", ".join(sorted({p for v in old["results"].values() for p in v if p not in peers})))
    peers = [p for p in PEERS if p in peers or any(p in v for v in results.values())]
    for peer in peers:
        if a.no_run or peer not in (a.only or PEERS):
            continue
        if peer == "strata" and not has_serve(a.strata):
            notes.append(f"strata: column missing: {a.strata or 'no strata binary'} has no `serve` subcommand "
                         "(build a branch with `strata serve`, then rerun)")
            continue
        if peer.startswith("llama.cpp") and not (a.llama_server and os.access(a.llama_server, os.X_OK)):
            notes.append(f"{peer}: column missing: no llama-server (bench/serve/build_llama_server.sh builds it)")
            continue
        if peer == "transformers":
            err = run_hf_peer(a, scale, results)
            if err:
                notes.append(err)
        else:
            err = run_server_peer(peer, a, scale, out, results)
            if err:
                notes.append(err)
    with open(os.path.join(out, "results.json" if not a.no_run else "merged.json"), "w") as f:
        json.dump({"scale": scale, "threads": a.threads, "model": a.model, "results": results, "notes": notes}, f,
                  indent=1)
    print(f"## Serving benchmark (scale {scale}, {a.threads} threads each, model {a.model['params'] / 1e6:.1f}M "
          f"parameters, fp32 unless noted)\n")
    for w in a.workload:
        s = workloads.spec(w, scale)
        print(f"### {w}: {s['requests']} requests from {s['clients']} client(s), prompts {s['prompt'][0]}-"
              f"{s['prompt'][1]} tokens, outputs {s['output'][0]}-{s['output'][1]} tokens\n")
        print(table(w, results.get(w, {}), peers) + "\n")
    for n in notes:
        print(f"- {n}")
    print(f"\n↓ lower is better, ↑ higher is better; ratios are strata / peer. Raw figures: {out}/"
          + ("merged.json" if a.no_run else "results.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
