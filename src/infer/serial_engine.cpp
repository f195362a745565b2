#include "infer/serial_engine.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace strata {

SerialEngine::SerialEngine(Model& model, SerialEngineOptions opts) : model_(model), opts_(opts) {
  if (opts_.max_queue < 0) throw InputError(fmt::format("serial engine: max_queue must be >= 0, got {}", opts_.max_queue));
  if (opts_.max_context < 2) throw InputError(fmt::format("serial engine: max_context must be >= 2, got {}", opts_.max_context));
}

SerialEngine::~SerialEngine() = default;

int64_t SerialEngine::submit(RequestParams p, TokenCallback on_event) {
  const int64_t V = model_.vocab(), P = int64_t(p.prompt.size());
  if (p.prompt.empty()) throw InputError("the prompt is empty: a request needs at least one token");
  for (int32_t t : p.prompt)
    if (t < 0 || t >= V) throw InputError(fmt::format("prompt token id {} is not in [0, {})", t, V));
  if (p.max_tokens < 1) throw InputError(fmt::format("max_tokens must be >= 1, got {}", p.max_tokens));
  if (P + p.max_tokens > opts_.max_context)
    throw InputError(fmt::format("the prompt ({} tokens) plus max_tokens ({}) is {}, beyond this engine's context of {} tokens",
                                 P, p.max_tokens, P + p.max_tokens, opts_.max_context));
  const SamplerConfig& s = p.sampler;
  if (!std::isfinite(s.temperature) || s.temperature < 0)
    throw InputError(fmt::format("temperature must be a finite number >= 0, got {}", s.temperature));
  if (!(s.top_p > 0 && s.top_p <= 1)) throw InputError(fmt::format("top_p must be in (0, 1], got {}", s.top_p));
  if (s.top_k < 0) throw InputError(fmt::format("top_k must be >= 0, got {}", s.top_k));
  if (!on_event) throw InputError("submit: no event callback");
  std::lock_guard lk(mu_);
  if (int64_t(queue_.size()) >= opts_.max_queue)
    throw EngineBusy(fmt::format("the queue is full ({} requests waiting); try again later", queue_.size()));
  const int64_t id = next_id_++;
  queue_.push_back(Request{id, std::move(p), std::move(on_event)});
  work_ = true;
  cv_.notify_all();
  return id;
}

void SerialEngine::cancel(int64_t id) {
  std::lock_guard lk(mu_);
  cancelled_.push_back(id);
  work_ = true;
  cv_.notify_all();
}

void SerialEngine::wait_for_work(std::chrono::milliseconds timeout) {
  std::unique_lock lk(mu_);
  cv_.wait_for(lk, timeout, [&] { return work_; });
  work_ = false;
}

EngineStats SerialEngine::stats() const {
  EngineStats s;
  {
    std::lock_guard lk(mu_);
    s.waiting = int64_t(queue_.size());
  }
  s.running = running_.load();
  s.prompt_tokens = prompt_tokens_.load();
  s.generated_tokens = generated_tokens_.load();
  return s;
}

void SerialEngine::finish_with(Request& req, FinishReason why, const std::string& error) {
  TokenEvent e;
  e.request = req.id;
  e.finish = why;
  e.error = error;
  try {
    req.on_event(e);
  } catch (...) {  // the request is over either way
  }
}

bool SerialEngine::step() {
  std::vector<Request> dropped;  // cancelled while queued
  std::vector<int64_t> cancels;
  std::optional<Request> next;
  {
    std::lock_guard lk(mu_);
    cancels.swap(cancelled_);
    for (int64_t id : cancels) {
      auto it = std::find_if(queue_.begin(), queue_.end(), [&](const Request& r) { return r.id == id; });
      if (it != queue_.end()) {
        dropped.push_back(std::move(*it));
        queue_.erase(it);
      }
    }
    if (!cur_ && !queue_.empty()) {
      next = std::move(queue_.front());
      queue_.pop_front();
    }
  }
  for (Request& r : dropped) finish_with(r, FinishReason::cancelled);
  bool did = !dropped.empty();
  if (cur_ && std::find(cancels.begin(), cancels.end(), cur_->req.id) != cancels.end()) {
    finish_with(cur_->req, FinishReason::cancelled);
    cur_.reset();
    running_ = 0;
    return true;
  }
  if (cur_) {
    advance();
    return true;
  }
  if (next) {
    start(std::move(*next));
    return true;
  }
  return did;
}

void SerialEngine::start(Request req) {
  const int64_t V = model_.vocab(), P = int64_t(req.params.prompt.size());
  prompt_tokens_ += P;
  try {
    Running r;
    r.dec = std::make_unique<Decoder>(model_, 1, P + req.params.max_tokens, opts_.decoder);
    r.sampler = std::make_unique<Sampler>(req.params.sampler);
    r.rng = Rng(req.params.seed);
    r.logits.resize(size_t(V));
    r.dec->prefill(req.params.prompt.data(), P, r.logits.data());
    r.next = r.sampler->sample(r.logits.data(), V, r.rng);
    r.req = std::move(req);
    cur_ = std::move(r);
    running_ = 1;
  } catch (const std::exception& e) {
    finish_with(req, FinishReason::error, e.what());
  }
}

void SerialEngine::advance() {
  Running& r = *cur_;
  const RequestParams& p = r.req.params;
  TokenEvent e;
  e.request = r.req.id;
  e.token = r.next;
  ++r.generated;
  ++generated_tokens_;
  if (r.generated >= p.max_tokens) e.finish = FinishReason::length;
  else if (std::find(p.stop_ids.begin(), p.stop_ids.end(), r.next) != p.stop_ids.end()) e.finish = FinishReason::stop;
  bool go_on = true;
  try {
    go_on = r.req.on_event(e);
  } catch (...) {
    go_on = false;
  }
  if (e.finish != FinishReason::none || !go_on) {
    if (e.finish == FinishReason::none) finish_with(r.req, FinishReason::stop);
    cur_.reset();
    running_ = 0;
    return;
  }
  try {
    r.dec->step(&r.next, r.logits.data());
    r.next = r.sampler->sample(r.logits.data(), model_.vocab(), r.rng);
  } catch (const std::exception& ex) {
    finish_with(r.req, FinishReason::error, ex.what());
    cur_.reset();
    running_ = 0;
  }
}

}  // namespace strata
