"""Per-request timings -> the workload figures (shared by the HTTP load generator and the in-process
transformers peer, so that every column is computed the same way).

A request's record: {"t_submit", "t_tokens": [arrival time of each streamed chunk that carried
output], "tokens": output tokens (the server's usage count when it gave one, else the chunks),
"prompt_tokens", "error"}. Times in seconds on one monotonic clock.
  TTFT         t_tokens[0] - t_submit
  inter-token  the gaps between consecutive chunks (a chunk normally carries one token; when the
               server's count says some chunks carried several, every gap is scaled by chunks / tokens)
  stream tok/s (tokens - 1) / (t_tokens[-1] - t_tokens[0]): the decode rate a reader of the stream sees
  total tok/s  all output tokens / (last arrival - first submission)
"""


def percentile(xs, q):
    """Linear interpolation between closest ranks (numpy's default); None for no data."""
    if not xs:
        return None
    s = sorted(xs)
    k = (len(s) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def inter_token_gaps(r):
    t = r["t_tokens"]
    if len(t) < 2:
        return []
    gaps = [b - a for a, b in zip(t, t[1:])]
    if r["tokens"] <= len(t):
        return gaps
    # The server merged some tokens into one chunk: spread the decode time evenly over the tokens
    # (each gap scaled by chunks / tokens), so the gaps still add up to the decode time per token.
    f = len(gaps) / (r["tokens"] - 1)
    return [g * f for g in gaps]


def summarize(records):
    """The figures of one workload run (keys are the table's rows)."""
    ok = [r for r in records if not r.get("error") and r["t_tokens"]]
    errors = len(records) - len(ok)
    out = {"requests": len(records), "errors": errors}
    if not ok:
        return out
    ttft = [r["t_tokens"][0] - r["t_submit"] for r in ok]
    itl = [g for r in ok for g in inter_token_gaps(r)]
    stream = [(r["tokens"] - 1) / (r["t_tokens"][-1] - r["t_tokens"][0])
              for r in ok if r["tokens"] > 1 and r["t_tokens"][-1] > r["t_tokens"][0]]
    tokens = sum(r["tokens"] for r in ok)
    wall = max(r["t_tokens"][-1] for r in ok) - min(r["t_submit"] for r in records)
    out.update({
        "ttft_p50_ms": 1e3 * percentile(ttft, 50), "ttft_p99_ms": 1e3 * percentile(ttft, 99),
        "itl_p50_ms": None if not itl else 1e3 * percentile(itl, 50),
        "itl_p99_ms": None if not itl else 1e3 * percentile(itl, 99),
        "stream_tok_s_p50": percentile(stream, 50), "stream_tok_s_min": min(stream) if stream else None,
        "output_tokens": tokens, "prompt_tokens": sum(r.get("prompt_tokens", 0) for r in ok),
        "wall_s": wall, "total_tok_s": tokens / wall if wall > 0 else None,
    })
    return out


def self_test():
    """Synthetic timings with known answers; raises AssertionError on a wrong figure."""
    def close(a, b):
        assert abs(a - b) < 1e-9, (a, b)
    close(percentile([1, 2, 3, 4], 50), 2.5)
    close(percentile([5], 99), 5)
    close(percentile(list(range(101)), 99), 99)
    assert percentile([], 50) is None
    # Two requests: submitted at 0, first chunk at 0.1 / 0.3, then one chunk every 10 ms / 20 ms.
    a = {"t_submit": 0.0, "t_tokens": [0.1 + 0.01 * i for i in range(11)], "tokens": 11, "prompt_tokens": 5}
    b = {"t_submit": 0.0, "t_tokens": [0.3 + 0.02 * i for i in range(6)], "tokens": 6, "prompt_tokens": 7}
    bad = {"t_submit": 0.0, "t_tokens": [], "tokens": 0, "error": "HTTP 500"}
    s = summarize([a, b, bad])
    assert s["requests"] == 3 and s["errors"] == 1, s
    close(s["ttft_p50_ms"], 200.0)
    close(s["ttft_p99_ms"], 100 + 200 * 0.99)
    close(s["itl_p50_ms"], 10.0)  # 10 gaps of 10 ms and 5 of 20 ms
    close(s["itl_p99_ms"], 20.0)
    close(s["stream_tok_s_p50"], 75.0)  # 100 and 50 tok/s
    close(s["stream_tok_s_min"], 50.0)
    assert s["output_tokens"] == 17 and s["prompt_tokens"] == 12
    close(s["wall_s"], 0.4)
    close(s["total_tok_s"], 17 / 0.4)
    # A server that merged tokens: 3 chunks carrying 5 tokens -> each 40 ms gap stands for 2 tokens.
    m = {"t_submit": 0.0, "t_tokens": [0.1, 0.14, 0.18], "tokens": 5}
    g = inter_token_gaps(m)
    assert len(g) == 2 and all(abs(x - 0.02) < 1e-12 for x in g), g
    close(summarize([m])["stream_tok_s_p50"], 4 / 0.08)
    return "stats self-test: 15 checks passed"
