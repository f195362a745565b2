#!/usr/bin/env python3
"""A stand-in OpenAI-compatible completion server (Python stdlib) for checking the load generator and
the driver without a model: streams max_tokens chunks of one token each, --delay-ms apart, then a final
chunk with usage and [DONE]; GET /health, /v1/models and /metrics (a `fake_running` gauge).

  fake_server.py [--port P] [--delay-ms D]     (also: `fake_server.py serve --port P ...`, and
                                                `fake_server.py --help` lists a `serve` subcommand,
                                                so compare.py can run it as its strata column)
"""
import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def make_handler(delay_s):
    running = [0]
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def reply(self, code, body, ctype="application/json"):
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/metrics":
                self.reply(200, f"# TYPE fake_running gauge\nfake_running {running[0]}\n", "text/plain")
            elif self.path in ("/health", "/v1/models"):
                self.reply(200, json.dumps({"status": "ok", "data": [{"id": "model"}]}))
            else:
                self.reply(404, json.dumps({"error": {"message": "not found"}}))

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                req = json.loads(body)
                n, prompt = int(req["max_tokens"]), req["prompt"]
            except (ValueError, KeyError, TypeError) as e:
                self.reply(400, json.dumps({"error": {"message": f"bad request: {e}"}}))
                return
            with lock:
                running[0] += 1
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                for i in range(n):
                    time.sleep(delay_s)
                    chunk = {"object": "text_completion", "choices": [{"index": 0, "text": f" t{i}",
                                                                        "finish_reason": "length" if i == n - 1 else None}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                usage = {"prompt_tokens": len(prompt), "completion_tokens": n, "total_tokens": len(prompt) + n}
                self.wfile.write(f"data: {json.dumps({'choices': [], 'usage': usage})}\n\ndata: [DONE]\n\n".encode())
                self.wfile.flush()
            finally:
                with lock:
                    running[0] -= 1
            self.close_connection = True

    return Handler


def start(port=0, delay_ms=0.0):
    """Starts the server in a daemon thread; returns (server, url)."""
    ThreadingHTTPServer.request_queue_size = 1024  # the listen backlog: rollouts connect all at once
    srv = ThreadingHTTPServer(("127.0.0.1", port), make_handler(delay_ms / 1e3))
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}"


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--help"]:
        print(__doc__ + "\nSubcommands:\n  serve                       run the fake server")
        return 0
    if argv[:1] == ["serve"]:
        argv = argv[1:]
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--delay-ms", type=float, default=5.0)
    a, _ = ap.parse_known_args(argv)  # compare.py's strata flags are ignored
    srv, url = start(a.port, a.delay_ms)
    print(f"fake server on {url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
