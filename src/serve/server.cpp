#include "serve/server.h"

#include <httplib.h>
#include <sys/socket.h>
#include <omp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <ctime>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "infer/chat_template.h"
#include "serve/connection_probe.h"
#include "serve/openai_request.h"
#include "serve/openai_response.h"
#include "serve/text_stream.h"

namespace strata {

using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// One request's hand-off: the engine thread's callback writes, the HTTP worker reads.
struct Pending {
  std::mutex mu;
  std::condition_variable cv;
  std::string text;            // text not yet taken by the worker
  std::vector<int32_t> ids;    // ids not yet taken
  bool done = false;           // the generation is over (finish set)
  std::string finish;          // OpenAI's finish_reason, or "cancelled" / "timeout" / "error"
  std::string error;           // finish == "error": why
  int64_t completion_tokens = 0;
  // Set by the worker when it stops listening (client gone: "cancelled"; timeout: "timeout"); the
  // callback then returns false and the request is counted under this reason.
  std::atomic<bool> abandoned{false};
  std::string abandon_reason;  // guarded by mu
};

// What the worker takes out of a Pending at once.
struct Taken {
  std::string text;
  std::vector<int32_t> ids;
  bool done = false;
  std::string finish, error;
  int64_t completion_tokens = 0;
};

Taken take(Pending& p) {  // p.mu held
  Taken t;
  t.text.swap(p.text);
  t.ids.swap(p.ids);
  t.done = p.done;
  t.finish = p.finish;
  t.error = p.error;
  t.completion_tokens = p.completion_tokens;
  return t;
}

std::string random_hex(size_t n) {
  static thread_local std::mt19937_64 g{std::random_device{}()};
  static const char* hex = "0123456789abcdef";
  std::string s(n, '0');
  for (auto& c : s) c = hex[g() & 15];
  return s;
}

}  // namespace

struct Server::Impl {
  const LoadedModel& lm;
  std::unique_ptr<Engine> engine;
  ServeOptions opts;
  ServeMetrics metrics;
  std::optional<ChatTemplate> chat;
  std::string chat_unavailable;
  httplib::Server http;
  std::thread http_thread, engine_thread;
  std::atomic<bool> stopping{false}, engine_stop{false}, listen_returned{false};
  std::mutex stats_mu;
  EngineStats stats;  // the engine thread's latest snapshot (stats() is read on that thread only)
  std::mutex stop_mu;
  std::condition_variable stopped_cv;
  bool started = false, stopped = false;
  int port = -1;

  Impl(const LoadedModel& m, std::unique_ptr<Engine> e, ServeOptions o) : lm(m), engine(std::move(e)), opts(std::move(o)) {
    if (lm.tokenizer_config_json.empty()) {
      chat_unavailable = "this model has no chat template (it came without a tokenizer_config.json): use /v1/completions";
    } else {
      try {
        chat = ChatTemplate::from_tokenizer_config(lm.tokenizer_config_json, "tokenizer_config.json");
      } catch (const InputError& ex) {
        chat_unavailable = std::string("this model's chat template cannot be used: ") + ex.what() + "; use /v1/completions";
      }
    }
  }

  void log(const std::string& line) {
    if (opts.log_requests) fmt::print(stderr, "{}\n", line);
  }

  void send_error(httplib::Response& res, const ApiError& e) {
    res.status = e.status;
    res.set_content(error_body(e), "application/json");
  }

  RequestLimits limits(bool chat_request) const {
    RequestLimits l;
    l.model = opts.model_name;
    l.vocab = lm.model->vocab();
    l.max_tokens = opts.max_tokens;
    // Without max_tokens: 16 for completions (OpenAI's legacy default), as many as fit for chat
    // (OpenAI's chat default), within --max-tokens either way; check_lengths fits it to the context.
    l.default_max_tokens = chat_request ? opts.max_tokens : std::min<int64_t>(opts.max_tokens, 16);
    return l;
  }

  // The prompt ids of a request, checked against the limits.
  std::vector<int32_t> prompt_ids(const CompletionRequest& r) const {
    if (r.prompt_is_ids) return r.prompt_ids;
    try {
      return encode_text(lm, r.prompt);
    } catch (const InputError& e) {
      throw ApiError(400, e.what(), "invalid_request_error", "prompt");
    }
  }

  std::vector<int32_t> chat_prompt_ids(const ChatRequest& r) const {
    if (!chat) throw ApiError(400, chat_unavailable, "invalid_request_error", "messages", "no_chat_template");
    std::vector<ChatMessage> msgs;
    for (const auto& m : r.messages) msgs.push_back({m.role == "developer" ? "system" : m.role, m.content});
    std::string text;
    try {
      text = chat->render(msgs, true);
    } catch (const InputError& e) {
      throw ApiError(400, std::string("the chat template cannot render these messages: ") + e.what(), "invalid_request_error", "messages");
    }
    // As transformers' apply_chat_template(tokenize=True): the template writes the special tokens itself.
    if (lm.tokenizer) return lm.tokenizer->encode(text, false);
    try {
      return encode_text(lm, text);
    } catch (const InputError& e) {
      throw ApiError(400, e.what(), "invalid_request_error", "messages");
    }
  }

  void check_lengths(const std::vector<int32_t>& prompt, SamplingRequest& s, const char* param) const {
    const int64_t P = int64_t(prompt.size()), ctx = engine->max_context();
    if (P == 0) throw ApiError(400, "the prompt is empty (it encodes to no tokens)", "invalid_request_error", param);
    if (P > opts.max_prompt_tokens)
      throw ApiError(400, fmt::format("the prompt is {} tokens, beyond this server's limit of {} (--max-prompt-tokens)", P,
                                      opts.max_prompt_tokens),
                     "invalid_request_error", param, "context_length_exceeded");
    if (!s.max_tokens_given) s.max_tokens = std::max<int64_t>(1, std::min(s.max_tokens, ctx - P));
    if (P + s.max_tokens > ctx)
      throw ApiError(400, fmt::format("this model's maximum context length is {} tokens; you requested {} ({} in the prompt, "
                                      "{} for the completion): shorten the prompt or lower max_tokens",
                                      ctx, P + s.max_tokens, P, s.max_tokens),
                     "invalid_request_error", "max_tokens", "context_length_exceeded");
  }

  // The engine callback of a request (runs on the engine thread).
  TokenCallback callback(std::shared_ptr<Pending> p, std::vector<std::string> stop, Clock::time_point arrived, int64_t P) {
    auto decode = [this](const std::vector<int32_t>& ids) {
      if (lm.tokenizer || lm.config.model.vocab == "bytes") return decode_text(lm, ids);
      return std::string();  // a model of ids only: the ids are the answer (token_ids)
    };
    auto stream = std::make_shared<TextStream>(decode, std::move(stop));
    auto last = std::make_shared<Clock::time_point>();
    auto ended = std::make_shared<bool>(false);
    return [this, p, stream, arrived, last, ended, P](const TokenEvent& e) -> bool {
      if (*ended) return false;  // the engine's closing event after this callback ended the request
      std::string add;
      bool end = false;
      std::string finish, error;
      if (e.token >= 0) {
        const auto now = Clock::now();
        if (*last == Clock::time_point()) metrics.observe_ttft(std::chrono::duration<double>(now - arrived).count());
        else metrics.observe_inter_token(std::chrono::duration<double>(now - *last).count());
        *last = now;
        add = stream->push(e.token);
        if (stream->stopped()) end = true, finish = "stop";
      }
      if (!end && e.finish != FinishReason::none) {
        end = true;
        add += stream->finish();
        finish = finish_reason_name(e.finish);
        error = e.error;
      }
      const bool abandoned = p->abandoned.load();
      int64_t n = 0;
      {
        std::lock_guard lk(p->mu);
        p->text += add;
        if (e.token >= 0) p->ids.push_back(e.token), ++p->completion_tokens;
        n = p->completion_tokens;
        if (end) {
          if (abandoned) finish = p->abandon_reason;
          p->done = true;
          p->finish = finish;
          p->error = error;
        }
      }
      if (end) {  // counted before the worker is woken, so that its response never precedes the count
        *ended = true;
        metrics.request_finished(finish, P, n);
      }
      p->cv.notify_all();
      return !end && !abandoned;
    };
  }

  void abandon(Pending& p, int64_t id, const char* reason) {
    {
      std::lock_guard lk(p.mu);
      if (p.abandoned) return;
      p.abandon_reason = reason;
      p.abandoned = true;
    }
    engine->cancel(id);
  }

  void handle_generate(const httplib::Request& req, httplib::Response& res, bool chat_request) {
    const auto arrived = Clock::now();
    const char* path = chat_request ? "/v1/chat/completions" : "/v1/completions";
    try {
      SamplingRequest s;
      std::vector<int32_t> prompt;
      const char* param = chat_request ? "messages" : "prompt";
      if (chat_request) {
        ChatRequest r = parse_chat_request(req.body, limits(true));
        prompt = chat_prompt_ids(r);
        s = r;
      } else {
        CompletionRequest r = parse_completion_request(req.body, limits(false));
        prompt = prompt_ids(r);
        s = r;
      }
      check_lengths(prompt, s, param);
      RequestParams rp;
      rp.prompt = prompt;
      rp.max_tokens = s.max_tokens;
      rp.sampler.temperature = s.temperature;
      rp.sampler.top_p = s.top_p;
      rp.sampler.top_k = s.top_k;
      rp.seed = s.seed ? *s.seed : std::random_device{}();
      if (!s.ignore_eos) rp.stop_ids = lm.eos_ids;
      auto p = std::make_shared<Pending>();
      const int64_t P = int64_t(prompt.size());
      int64_t id = 0;
      try {
        id = engine->submit(std::move(rp), callback(p, s.stop, arrived, P));
      } catch (const EngineBusy& e) {
        throw ApiError(429, std::string("the server is busy: ") + e.what(), "rate_limit_exceeded", "", "queue_full");
      } catch (const InputError& e) {
        throw ApiError(400, e.what(), "invalid_request_error");
      }
      ResponseHead head{(chat_request ? "chatcmpl-" : "cmpl-") + random_hex(24), int64_t(std::time(nullptr)), opts.model_name,
                        chat_request};
      const auto deadline = arrived + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(opts.timeout_s));
      if (s.stream) stream(res, p, id, head, s.include_usage, P, deadline, arrived, path);
      else respond_whole(req, res, *p, id, head, P, deadline, arrived, path);
    } catch (const ApiError& e) {
      send_error(res, e);
      log(fmt::format("POST {} {} {:.1f}ms: {}", path, e.status, 1e3 * seconds_since(arrived), e.what()));
    }
  }

  void respond_whole(const httplib::Request& req, httplib::Response& res, Pending& p, int64_t id, const ResponseHead& head,
                     int64_t P, Clock::time_point deadline, Clock::time_point arrived, const char* path) {
    // A client that hangs up is looked for from the first second on (ConnectionProbe): a request
    // answered sooner never pays for the search.
    ConnectionProbe probe(req.remote_addr, req.remote_port, req.local_port);
    auto next_probe = arrived + std::chrono::seconds(1);
    std::unique_lock lk(p.mu);
    while (!p.done) {
      if (Clock::now() >= next_probe) {
        next_probe = Clock::now() + std::chrono::milliseconds(250);
        lk.unlock();
        if (!probe.peer_open()) {
          abandon(p, id, "cancelled");
          res.status = 499;  // nginx's "client closed request": nobody reads it
          log(fmt::format("POST {} 499 {:.1f}ms: the client closed its connection; request cancelled", path,
                          1e3 * seconds_since(arrived)));
          return;
        }
        lk.lock();
        continue;
      }
      if (stopping) {
        lk.unlock();
        abandon(p, id, "cancelled");
        throw ApiError(503, "the server is shutting down", "server_error", "", "shutting_down");
      }
      if (Clock::now() >= deadline) {
        lk.unlock();
        abandon(p, id, "timeout");
        throw ApiError(408, fmt::format("the request took longer than this server's limit of {} s (--timeout-s)", opts.timeout_s),
                       "timeout", "", "request_timeout");
      }
      p.cv.wait_for(lk, std::chrono::milliseconds(100));
    }
    Taken t = take(p);
    lk.unlock();
    if (t.finish == "error") throw ApiError(500, "generation failed: " + t.error, "server_error");
    res.set_content(response_body(head, t.text, t.ids, t.finish, Usage{P, t.completion_tokens}), "application/json");
    log(fmt::format("POST {} 200 {:.1f}ms: prompt {} + completion {} tokens, finish {}", path, 1e3 * seconds_since(arrived), P,
                    t.completion_tokens, t.finish));
  }

  void stream(httplib::Response& res, std::shared_ptr<Pending> p, int64_t id, const ResponseHead& head, bool include_usage,
              int64_t P, Clock::time_point deadline, Clock::time_point arrived, const char* path) {
    auto sent_role = std::make_shared<bool>(!head.chat);
    auto ok = std::make_shared<bool>(false);
    auto last_write = std::make_shared<Clock::time_point>(Clock::now());
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, p, id, head, include_usage, P, deadline, sent_role, ok, last_write](size_t, httplib::DataSink& sink) -> bool {
          auto write = [&](const std::string& s) { return sink.write(s.data(), s.size()); };
          auto gone = [&] {
            abandon(*p, id, "cancelled");
            return false;
          };
          if (!*sent_role) {
            *sent_role = true;
            if (!write(chunk_event(head, "", {}, "", true))) return gone();
          }
          std::unique_lock lk(p->mu);
          p->cv.wait_for(lk, std::chrono::milliseconds(100), [&] { return p->done || !p->text.empty() || !p->ids.empty(); });
          Taken t = take(*p);
          lk.unlock();
          if (t.done && t.finish == "error") {
            write(error_event(error_body(ApiError(500, "generation failed: " + t.error, "server_error"))));
            write(done_event());
            sink.done();
            return true;
          }
          if (!t.text.empty() || !t.ids.empty()) {
            if (!write(chunk_event(head, t.text, t.ids, ""))) return gone();
            *last_write = Clock::now();
          }
          if (t.done) {
            if (!write(chunk_event(head, "", {}, t.finish))) return gone();
            if (include_usage && !write(usage_event(head, Usage{P, t.completion_tokens}))) return gone();
            if (!write(done_event())) return gone();
            *ok = true;
            sink.done();
            return true;
          }
          if (stopping || Clock::now() >= deadline) {
            abandon(*p, id, stopping ? "cancelled" : "timeout");
            const ApiError e = stopping ? ApiError(503, "the server is shutting down", "server_error", "", "shutting_down")
                                        : ApiError(408, fmt::format("the request took longer than this server's limit of {} s "
                                                                    "(--timeout-s)", opts.timeout_s),
                                                   "timeout", "", "request_timeout");
            write(error_event(error_body(e)));
            write(done_event());
            sink.done();
            return true;
          }
          // Nothing to send for a while: an SSE comment, so that a client that went away while its
          // request waits in the queue is noticed (a write to a closed connection fails) and cancelled.
          if (Clock::now() - *last_write > std::chrono::seconds(1)) {
            if (!write(": waiting\n\n")) return gone();
            *last_write = Clock::now();
          }
          if (!sink.is_writable()) return gone();
          return true;
        },
        [this, p, id, P, arrived, path, ok](bool success) {
          if (!success) abandon(*p, id, "cancelled");
          std::lock_guard lk(p->mu);
          log(fmt::format("POST {} 200 stream {:.1f}ms: prompt {} + completion {} tokens, {}", path, 1e3 * seconds_since(arrived), P,
                          p->completion_tokens,
                          *ok ? "finish " + p->finish : success ? "ended early" : "client disconnected"));
        });
  }

  void routes() {
    // Every handler's status is counted as it returns (httplib's logger runs after the response is
    // written, so a client could read /metrics before its previous response was counted).
    auto counted = [this](auto handler) {
      return [this, handler](const httplib::Request& q, httplib::Response& r) {
        handler(q, r);
        metrics.http_response(r.status == -1 ? 200 : r.status);
      };
    };
    http.Post("/v1/completions", counted([this](const httplib::Request& q, httplib::Response& r) { handle_generate(q, r, false); }));
    http.Post("/v1/chat/completions", counted([this](const httplib::Request& q, httplib::Response& r) { handle_generate(q, r, true); }));
    http.Get("/v1/models", counted([this](const httplib::Request&, httplib::Response& r) {
      nlohmann::json m = {{"id", opts.model_name}, {"object", "model"}, {"created", int64_t(std::time(nullptr))},
                          {"owned_by", "strata"}, {"max_model_len", engine->max_context()}};
      r.set_content(nlohmann::json{{"object", "list"}, {"data", nlohmann::json::array({m})}}.dump(-1, ' ', false,
                                                                                                   nlohmann::json::error_handler_t::replace),
                    "application/json");
    }));
    http.Get("/health", counted([](const httplib::Request&, httplib::Response& r) { r.set_content("{\"status\":\"ok\"}", "application/json"); }));
    http.Get("/metrics", counted([this](const httplib::Request&, httplib::Response& r) {
      EngineStats s;
      {
        std::lock_guard lk(stats_mu);
        s = stats;
      }
      r.set_content(metrics.render(s), "text/plain; version=0.0.4");
    }));
    // httplib's own refusals (no route, body too large, ...) get OpenAI's error body too.
    http.set_error_handler([this](const httplib::Request& q, httplib::Response& r) {
      if (!r.body.empty()) return;  // a handler's own error, counted there
      metrics.http_response(r.status);
      const std::string msg = r.status == 404   ? fmt::format("no such endpoint: {} {}", q.method, q.path)
                              : r.status == 413 ? std::string("the request body is too large")
                                                : fmt::format("HTTP {}", r.status);
      r.set_content(error_body(ApiError(r.status, msg, "invalid_request_error")), "application/json");
    });
    http.set_exception_handler([this](const httplib::Request&, httplib::Response& r, std::exception_ptr ep) {
      std::string what = "internal error";
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      r.status = 500;
      r.set_content(error_body(ApiError(500, what, "server_error")), "application/json");
      metrics.http_response(500);
    });
  }

  void drive() {
    if (opts.compute_threads > 0) omp_set_num_threads(opts.compute_threads);
    while (!engine_stop) {
      bool did = false;
      try {
        did = engine->step();
      } catch (const std::exception& e) {  // a step that fails outside any request: say so, keep serving
        fmt::print(stderr, "engine step failed: {}\n", e.what());
      }
      {
        std::lock_guard lk(stats_mu);
        stats = engine->stats();
      }
      if (!did) engine->wait_for_work(std::chrono::milliseconds(50));
    }
  }
};

Server::Server(const LoadedModel& model, std::unique_ptr<Engine> engine, ServeOptions opts)
    : impl_(std::make_unique<Impl>(model, std::move(engine), std::move(opts))) {
  STRATA_CHECK(impl_->engine, "Server: no engine");
  STRATA_CHECK(impl_->lm.model, "Server: no model");
}

Server::~Server() { stop(); }

int Server::start() {
  Impl& s = *impl_;
  STRATA_CHECK(!s.started, "Server::start called twice");
  std::signal(SIGPIPE, SIG_IGN);  // a client that closed its socket must not kill the server on write
  s.routes();
  const int threads = std::max(1, s.opts.http_threads);
  s.http.new_task_queue = [threads] { return new httplib::ThreadPool(size_t(threads)); };
  s.http.set_payload_max_length(16u << 20);
  s.http.set_read_timeout(30);
  s.http.set_write_timeout(30);
  // Debian's compiled httplib listens with a backlog of 5: a burst of clients connecting at once (a
  // batch of rollouts) had connections reset. Keep the listening socket's fd as httplib creates it,
  // and listen() on it again after the bind with a real backlog (Linux takes the new value).
  int listen_fd = -1;
  s.http.set_socket_options([&listen_fd](socket_t sock) {
    httplib::default_socket_options(sock);
    listen_fd = sock;
  });
  s.port = s.opts.port == 0 ? s.http.bind_to_any_port(s.opts.host) : (s.http.bind_to_port(s.opts.host, s.opts.port) ? s.opts.port : -1);
  if (s.port < 0)
    throw InputError(fmt::format("cannot listen on {}:{} (in use, or not an address of this machine)", s.opts.host, s.opts.port));
  if (listen_fd >= 0) ::listen(listen_fd, 1024);
  s.http.set_socket_options(httplib::default_socket_options);
  s.started = true;
  s.engine_thread = std::thread([&s] { s.drive(); });
  s.http_thread = std::thread([&s] {
    s.http.listen_after_bind();
    s.listen_returned = true;
  });
  // httplib's stop() does nothing until its accept loop runs (is_running): a stop() right after
  // start() would otherwise leave the loop waiting in accept() forever.
  while (!s.http.is_running() && !s.listen_returned) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return s.port;
}

void Server::wait() {
  std::unique_lock lk(impl_->stop_mu);
  impl_->stopped_cv.wait(lk, [&] { return impl_->stopped; });
}

void Server::stop() {
  Impl& s = *impl_;
  {
    std::lock_guard lk(s.stop_mu);
    if (s.stopped || !s.started) {
      s.stopped = true;
      s.stopped_cv.notify_all();
      return;
    }
  }
  s.stopping = true;
  s.http.stop();
  if (s.http_thread.joinable()) s.http_thread.join();
  s.engine_stop = true;
  if (s.engine_thread.joinable()) s.engine_thread.join();
  std::lock_guard lk(s.stop_mu);
  s.stopped = true;
  s.stopped_cv.notify_all();
}

const ServeMetrics& Server::metrics() const { return impl_->metrics; }
const std::string& Server::chat_unavailable() const { return impl_->chat_unavailable; }

}  // namespace strata
