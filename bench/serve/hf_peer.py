#!/usr/bin/env python3
"""The transformers peer: the workloads of bench/serve/workloads.py through model.generate, in process.

  hf_peer.py HF_DIR [--workload W ...] [--scale cpu|full] [--threads T] [--batch B] [--json OUT]

transformers has no server, so this is what a user of `generate` gets (greedy, fp32, KV cache, SDPA):
  agentic      one generate per request, batch 1, one after the other;
  interactive  the clients' k-th requests as one left-padded batch (all clients start together, so
               they arrive together), round after round;
  rollouts     all requests arrive at t=0 and are run in submission order as static batches of B
               (--batch, default 32), left-padded, each batch generating its longest output: tokens
               past a request's own max_tokens are computed and thrown away (not counted), and a
               request waits for the batches before it (that wait is in its TTFT).
Token arrival times come from a generate streamer (one call per decoding step), so TTFT,
inter-token gaps and tokens/s are computed by bench/serve/stats.py exactly as for the servers.
Prints one JSON line per workload.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stats  # noqa: E402
import workloads  # noqa: E402


class StepTimes:
    """A generate streamer that records when each decoding step's tokens were produced."""

    def __init__(self):
        self.times, self._prompt_seen = [], False

    def put(self, value):
        if not self._prompt_seen:  # generate first puts the prompt
            self._prompt_seen = True
            return
        self.times.append(time.perf_counter())

    def end(self):
        pass


def generate_batch(model, torch, reqs, pad_id=0):
    """Runs `reqs` as one left-padded greedy batch to the longest max_tokens; returns the step times."""
    P = max(len(r["prompt"]) for r in reqs)
    ids = torch.full((len(reqs), P), pad_id, dtype=torch.long)
    mask = torch.zeros((len(reqs), P), dtype=torch.long)
    for i, r in enumerate(reqs):
        ids[i, P - len(r["prompt"]):] = torch.tensor(r["prompt"])
        mask[i, P - len(r["prompt"]):] = 1
    n = max(r["max_tokens"] for r in reqs)
    st = StepTimes()
    model.generate(ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                   eos_token_id=None, pad_token_id=pad_id, use_cache=True, streamer=st)
    return st.times


def records_for(reqs, t_submit, times):
    return [{"t_submit": t_submit, "t_tokens": times[:r["max_tokens"]], "tokens": min(r["max_tokens"], len(times)),
             "prompt_tokens": len(r["prompt"])} for r in reqs]


def run_workload(model, torch, name, reqs, batch):
    recs = [None] * len(reqs)
    with torch.inference_mode():
        if name == "agentic":
            for r in reqs:
                t0 = time.perf_counter()
                recs[r["id"]] = records_for([r], t0, generate_batch(model, torch, [r]))[0]
        elif name == "interactive":
            by_client = {}
            for r in reqs:
                by_client.setdefault(r["client"], []).append(r)
            rounds = max(len(v) for v in by_client.values())
            for k in range(rounds):
                rnd = [v[k] for v in by_client.values() if k < len(v)]
                t0 = time.perf_counter()
                for r, rec in zip(rnd, records_for(rnd, t0, generate_batch(model, torch, rnd))):
                    recs[r["id"]] = rec
        else:
            t0 = time.perf_counter()
            for i in range(0, len(reqs), batch):
                b = reqs[i:i + batch]
                for r, rec in zip(b, records_for(b, t0, generate_batch(model, torch, b))):
                    recs[r["id"]] = rec
    return recs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("hf_dir")
    ap.add_argument("--workload", choices=workloads.WORKLOADS, action="append", help="repeatable (default: all)")
    ap.add_argument("--scale", default="cpu", choices=list(workloads.SCALES))
    ap.add_argument("--full", action="store_true", help="= --scale full")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--batch", type=int, default=32, help="rollouts: static batch size (default 32)")
    ap.add_argument("--label", default="transformers")
    ap.add_argument("--json", metavar="FILE", help="append one JSON line per workload to FILE")
    a = ap.parse_args(argv)
    import torch
    import transformers as T
    T.logging.set_verbosity_error()
    torch.set_num_threads(a.threads)
    model = T.AutoModelForCausalLM.from_pretrained(a.hf_dir, dtype=torch.float32).eval()
    vocab = model.config.vocab_size
    scale = "full" if a.full else a.scale
    with torch.inference_mode():  # warm-up: first calls allocate and pick kernels
        generate_batch(model, torch, [{"prompt": list(range(3, 35)), "max_tokens": 4}] * 2)
    for w in a.workload or workloads.WORKLOADS:
        reqs = workloads.make(w, scale, vocab, a.seed)
        s = stats.summarize(run_workload(model, torch, w, reqs, a.batch))
        s.update({"workload": w, "scale": scale, "label": a.label, "short": 0, "first_error": None,
                  "threads": a.threads, "batch": a.batch if w == "rollouts" else None,
                  "torch": torch.__version__, "transformers": T.__version__})
        print(json.dumps(s), flush=True)
        if a.json:
            with open(a.json, "a") as f:
                f.write(json.dumps(s) + "\n")
        print(f"{a.label} {w}: {s['output_tokens']} tokens, TTFT p50 {s['ttft_p50_ms']:.0f} ms, "
              f"ITL p50 {s['itl_p50_ms'] or 0:.1f} ms, {s['total_tok_s']:.1f} tok/s total", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
