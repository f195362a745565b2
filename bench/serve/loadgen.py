#!/usr/bin/env python3
"""Load generator for any OpenAI-compatible server: streams /v1/completions and times every request.

  loadgen.py --url http://127.0.0.1:8080 --workload agentic [--scale cpu|full] [--label NAME] [--json OUT]
  loadgen.py --self-test            # checks the statistics on synthetic timings (no server)

Sends the requests of bench/serve/workloads.py (token-id prompts, the same for every server) as
  {"model", "prompt": [ids], "max_tokens": n, "temperature": 0, "stream": true,
   "stream_options": {"include_usage": true}, "ignore_eos": true}
("ignore_eos" is llama.cpp's; servers that do not know it ignore it, and a random-weight model rarely
meets its end token anyway). One thread per concurrent client (Python stdlib only: http.client),
each client sending its requests one after another; a request's timings are taken on the client's
side: submission, and the arrival of every SSE chunk that carries output text. The output token
count is the server's usage.completion_tokens when it sends one, else the number of such chunks.
Prints one JSON line (stats.summarize's figures plus the workload and label) and a short summary
on stderr. Python stdlib only, so it runs under any python3.
"""
import argparse
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stats  # noqa: E402
import workloads  # noqa: E402


def stream_completion(url, body, timeout):
    """POSTs one streaming completion; returns the record stats.summarize reads."""
    u = urllib.parse.urlsplit(url)
    rec = {"t_submit": time.perf_counter(), "t_tokens": [], "tokens": 0, "prompt_tokens": len(body["prompt"])}
    usage = None
    try:
        conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
        conn.request("POST", (u.path.rstrip("/") or "") + "/v1/completions", json.dumps(body),
                     {"Content-Type": "application/json", "Accept": "text/event-stream"})
        resp = conn.getresponse()
        if resp.status != 200:
            rec["error"] = f"HTTP {resp.status}: {resp.read(500).decode(errors='replace')}"
            return rec
        while True:
            line = resp.readline()
            if not line:
                break
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            now = time.perf_counter()
            chunk = json.loads(data)
            if chunk.get("error"):
                rec["error"] = str(chunk["error"])[:500]
                break
            if chunk.get("usage"):
                usage = chunk["usage"]
            for c in chunk.get("choices") or []:
                # Token ids: llama.cpp's "tokens", strata's (and vLLM's) "token_ids"; a model of ids
                # only streams empty text with its ids.
                ids = c.get("tokens") or c.get("token_ids")
                if c.get("text") or ids:
                    rec["t_tokens"].append(now)
                    rec["tokens"] += len(ids) if isinstance(ids, list) else 1
        conn.close()
    except (OSError, http.client.HTTPException, ValueError) as e:
        rec["error"] = f"{type(e).__name__}: {e}"
    if usage:
        rec["tokens"] = usage.get("completion_tokens", rec["tokens"])
        rec["prompt_tokens"] = usage.get("prompt_tokens", rec["prompt_tokens"])
    if not rec.get("error") and rec["tokens"] != body["max_tokens"]:
        rec["short"] = f"{rec['tokens']} of {body['max_tokens']} tokens"
    return rec


def run(url, requests, model, timeout=600.0, extra=None):
    """Sends `requests` (workloads.make) with one thread per client, all clients started together;
    returns the records in request order."""
    by_client = {}
    for r in requests:
        by_client.setdefault(r["client"], []).append(r)
    records = [None] * len(requests)
    start = threading.Barrier(len(by_client) + 1)

    def client(reqs):
        start.wait()
        for r in reqs:
            body = {"model": model, "prompt": r["prompt"], "max_tokens": r["max_tokens"], "temperature": 0.0,
                    "stream": True, "stream_options": {"include_usage": True}, "ignore_eos": True}
            body.update(extra or {})
            records[r["id"]] = stream_completion(url, body, timeout)

    threads = [threading.Thread(target=client, args=(reqs,), daemon=True) for reqs in by_client.values()]
    for t in threads:
        t.start()
    start.wait()
    for t in threads:
        t.join()
    return records


RUNNING_GAUGES = ("running", "requests_processing")  # strata's engine; llama-server's llamacpp:requests_processing


def scrape_running(url):
    """{metric: value} of the Prometheus gauges at URL/metrics whose name says running sequences."""
    u = urllib.parse.urlsplit(url)
    vals = {}
    try:
        conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=5)
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        if resp.status != 200:
            return vals
        text = resp.read().decode(errors="replace")
    except OSError:
        return vals
    for line in text.splitlines():
        name, _, v = line.rpartition(" ")
        if line.startswith("#") or not any(g in name.split("{")[0] for g in RUNNING_GAUGES):
            continue
        try:
            vals[name] = float(v)
        except ValueError:
            pass
    return vals


class PeakRunning:
    """Polls /metrics while a workload runs; .peak holds the largest value seen of each running gauge."""

    def __init__(self, url, every=0.25):
        self.url, self.every, self.peak = url, every, {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self):
        while not self._done.is_set():
            for k, v in scrape_running(self.url).items():
                self.peak[k] = max(self.peak.get(k, 0.0), v)
            self._done.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()


def wait_ready(url, timeout=300.0, proc=None):
    """Polls GET /health (then /v1/models) until the server answers 200; False on timeout or exit."""
    u = urllib.parse.urlsplit(url)
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            return False
        for path in ("/health", "/v1/models"):
            try:
                conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=5)
                conn.request("GET", path)
                if conn.getresponse().status == 200:
                    return True
            except OSError:
                pass
        time.sleep(0.5)
    return False


def self_test_http():
    """Round trip against fake_server.py (no timing is checked): every request answered, every token
    counted, clients' requests kept apart, an HTTP error recorded as an error."""
    import fake_server
    srv, url = fake_server.start(0, 1.0)
    try:
        assert wait_ready(url, 10)
        reqs = [{"id": i, "client": i % 3, "max_tokens": 3 + i, "prompt": list(range(5 + i))} for i in range(6)]
        recs = run(url, reqs, "model", 30)
        for r, rec in zip(reqs, recs):
            assert not rec.get("error") and not rec.get("short"), rec
            assert rec["tokens"] == r["max_tokens"] == len(rec["t_tokens"]), rec
            assert rec["prompt_tokens"] == len(r["prompt"]), rec
            assert rec["t_submit"] <= rec["t_tokens"][0] <= rec["t_tokens"][-1], rec
        for c in range(3):  # one client's requests one after another
            mine = [rec for r, rec in zip(reqs, recs) if r["client"] == c]
            assert mine[0]["t_tokens"][-1] <= mine[1]["t_submit"], mine
        s = stats.summarize(recs)
        assert s["errors"] == 0 and s["output_tokens"] == sum(r["max_tokens"] for r in reqs), s
        assert list(scrape_running(url)) == ["fake_running"], scrape_running(url)
        bad = run(url, [{"id": 0, "client": 0, "max_tokens": "x", "prompt": [1]}], "model", 30)[0]
        assert bad.get("error", "").startswith("HTTP 400"), bad
    finally:
        srv.shutdown()
    return "load generator self-test against fake_server.py: 6 streams and an HTTP error checked"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="server base URL, e.g. http://127.0.0.1:8080")
    ap.add_argument("--workload", choices=workloads.WORKLOADS, action="append",
                    help="repeatable (default: all three)")
    ap.add_argument("--scale", default="cpu", choices=list(workloads.SCALES), help="workload sizes (default: cpu)")
    ap.add_argument("--full", action="store_true", help="the issue's sizes (= --scale full)")
    ap.add_argument("--vocab", type=int, default=32000, help="prompt ids are drawn below this (default 32000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="model", help="the request's model field")
    ap.add_argument("--label", default="server", help="the column name in the tables")
    ap.add_argument("--warmup", type=int, default=1, help="untimed requests before each workload (default 1)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per request")
    ap.add_argument("--json", metavar="FILE", help="append one JSON line per workload to FILE")
    ap.add_argument("--self-test", action="store_true", help="check the statistics on synthetic timings and exit")
    a = ap.parse_args(argv)
    if a.self_test:
        print(stats.self_test())
        print(self_test_http())
        return 0
    if not a.url:
        ap.error("--url is required (or --self-test)")
    scale = "full" if a.full else a.scale
    for w in a.workload or workloads.WORKLOADS:
        reqs = workloads.make(w, scale, a.vocab, a.seed)
        for i in range(a.warmup):
            warm = dict(reqs[0], id=0, client=0, max_tokens=min(8, reqs[0]["max_tokens"]))
            warm["prompt"] = [(t + 1 + i) % a.vocab or 3 for t in warm["prompt"]]  # no prefix-cache hit
            run(a.url, [warm], a.model, a.timeout)
        with PeakRunning(a.url) as peak:
            records = run(a.url, reqs, a.model, a.timeout)
        s = stats.summarize(records)
        s["peak_running"] = max(peak.peak.values()) if peak.peak else None
        s["peak_running_metrics"] = peak.peak
        s.update({"workload": w, "scale": scale, "label": a.label,
                  "short": sum(1 for r in records if r.get("short")),
                  "first_error": next((r["error"] for r in records if r.get("error")), None)})
        print(json.dumps(s), flush=True)
        if a.json:
            with open(a.json, "a") as f:
                f.write(json.dumps(s) + "\n")
        print(f"{a.label} {w}: {s['requests']} requests, {s['errors']} errors, {s.get('output_tokens')} tokens, "
              f"TTFT p50 {s.get('ttft_p50_ms') or 0:.0f} ms, ITL p50 {s.get('itl_p50_ms') or 0:.1f} ms, "
              f"{s.get('total_tok_s') or 0:.1f} tok/s total", file=sys.stderr)
        if s["first_error"]:
            print(f"  first error: {s['first_error']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
