#pragma once
// `strata serve`: an OpenAI-compatible HTTP server (cpp-httplib) over an Engine.
//
// Threads: httplib's worker pool parses requests, tokenizes, submits to the engine and waits; one
// engine thread drives Engine::step(), and its token callbacks detokenize, cut stop strings and hand
// text to the waiting worker (a Pending per request). A streamed response is written by the worker
// as the text comes (SSE); a failed write (the client went away) cancels the request.
//
// Endpoints: POST /v1/completions, POST /v1/chat/completions, GET /v1/models, GET /health,
// GET /metrics (Prometheus). docs/serving.md, section "Server", shows them in use.
#include <memory>
#include <string>

#include "infer/engine.h"
#include "infer/loaded_model.h"
#include "serve/metrics.h"

namespace strata {

struct ServeOptions {
  std::string host = "127.0.0.1";
  int port = 8000;                  // 0: any free port (start() returns it)
  std::string model_name = "strata";  // the id in /v1/models; requests must name it (or no model)
  int64_t max_prompt_tokens = 4096;   // longer prompts: 400
  int64_t max_tokens = 2048;          // a request asking for more: 400
  double timeout_s = 600;             // a request running longer is ended (408, or an error event when streaming)
  int http_threads = 32;              // httplib's worker pool: concurrent connections served
  int compute_threads = 0;            // OpenMP threads of the engine thread; 0: the default
  bool log_requests = true;           // one line per request on stderr
};

class Server {
 public:
  // The model is read (tokenizer, eos ids, chat template) and must outlive the server; the engine runs on it.
  Server(const LoadedModel& model, std::unique_ptr<Engine> engine, ServeOptions opts);
  ~Server();  // stop()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and starts serving in background threads; returns the port. InputError when it cannot bind.
  int start();
  // Blocks until stop() (from another thread or a signal handler's thread).
  void wait();
  // Stops accepting, ends waiting responses (503), stops the engine thread. Idempotent.
  void stop();

  const ServeMetrics& metrics() const;
  // Why /v1/chat/completions is refused ("" when the model has a chat template).
  const std::string& chat_unavailable() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace strata
