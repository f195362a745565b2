"""The three serving workloads of issue 13, as lists of requests that every peer is given identically.

A request is {"id", "prompt" (token ids), "max_tokens", "client"}; requests with the same "client"
are sent one after the other by that client, different clients run concurrently. Prompts are random
token ids (seeded), so every server sees the same tokens whatever its tokenizer, and outputs are
forced to their length (ignore_eos) so every server generates the same number of tokens.

  agentic      one client, N requests in sequence, long prompt, fixed output: TTFT and inter-token latency
  interactive  16 clients at once, each R requests in sequence: TTFT and tokens/s per stream
  rollouts     one request per client, all submitted at once, mixed prompt and output lengths: total tokens/s

SCALES["full"] holds the issue's sizes (2k-token agentic prompt, 16 streams, 256 rollouts); "cpu"
(the default) keeps the shape of each workload but shrinks it to minutes on 2 CPU cores.
"""
import random

SCALES = {
    # requests, prompt length (range), output length (range), clients
    "cpu": {
        "agentic": {"requests": 4, "prompt": (512, 512), "output": (32, 32), "clients": 1},
        "interactive": {"requests": 16, "prompt": (64, 128), "output": (32, 32), "clients": 16},
        "rollouts": {"requests": 64, "prompt": (16, 128), "output": (8, 64), "clients": 64},
    },
    "full": {
        "agentic": {"requests": 8, "prompt": (2048, 2048), "output": (128, 128), "clients": 1},
        "interactive": {"requests": 64, "prompt": (128, 512), "output": (128, 128), "clients": 16},
        "rollouts": {"requests": 256, "prompt": (32, 512), "output": (32, 512), "clients": 256},
    },
}
WORKLOADS = list(SCALES["cpu"])


def spec(workload, scale="cpu"):
    if scale not in SCALES:
        raise SystemExit(f"unknown scale '{scale}' (valid: {', '.join(SCALES)})")
    if workload not in SCALES[scale]:
        raise SystemExit(f"unknown workload '{workload}' (valid: {', '.join(WORKLOADS)})")
    return SCALES[scale][workload]


def make(workload, scale="cpu", vocab=32000, seed=0, first_id=3):
    """The requests of `workload` at `scale`: ids drawn from [first_id, vocab) (below first_id: the
    special tokens of the GGUF placeholder vocabulary), lengths uniform in the spec's ranges."""
    s = spec(workload, scale)
    rng = random.Random(f"{workload}/{scale}/{seed}")
    out = []
    for i in range(s["requests"]):
        p = rng.randint(*s["prompt"])
        out.append({"id": i, "client": i % s["clients"], "max_tokens": rng.randint(*s["output"]),
                    "prompt": [rng.randrange(first_id, vocab) for _ in range(p)]})
    return out


def max_context(scale="cpu"):
    """The longest prompt + output of any workload at `scale` (servers' per-sequence context)."""
    return max(v["prompt"][1] + v["output"][1] for v in SCALES[scale].values())
