#include "serve/metrics.h"

#include <fmt/format.h>

namespace strata {

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += v;
  ++count_;
}

std::string Histogram::render(const std::string& name, const std::string& help) const {
  std::string out = fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
  int64_t acc = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    acc += counts_[i];
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, bounds_[i], acc);
  }
  acc += counts_.back();
  out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, acc, name, sum_, name, count_);
  return out;
}

namespace {
// Seconds: 1 ms to 60 s for the first token (a long queue), 1 ms to 5 s between tokens.
std::vector<double> ttft_bounds() { return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}; }
std::vector<double> itl_bounds() { return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}; }

void gauge(std::string& out, const char* name, const char* help, const char* type, int64_t v) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, v);
}
}  // namespace

ServeMetrics::ServeMetrics() : ttft_(ttft_bounds()), itl_(itl_bounds()) {
  for (const char* r : {"stop", "length", "cancelled", "timeout", "error"}) finished_[r] = 0;
}

void ServeMetrics::observe_ttft(double s) {
  std::lock_guard lk(mu_);
  ttft_.observe(s);
}

void ServeMetrics::observe_inter_token(double s) {
  std::lock_guard lk(mu_);
  itl_.observe(s);
}

void ServeMetrics::request_finished(const std::string& reason, int64_t prompt_tokens, int64_t completion_tokens) {
  std::lock_guard lk(mu_);
  ++finished_[reason];
  prompt_tokens_ += prompt_tokens;
  completion_tokens_ += completion_tokens;
}

void ServeMetrics::http_response(int status) {
  std::lock_guard lk(mu_);
  ++http_[status];
}

int64_t ServeMetrics::finished(const std::string& reason) const {
  std::lock_guard lk(mu_);
  auto it = finished_.find(reason);
  return it == finished_.end() ? 0 : it->second;
}

std::string ServeMetrics::render(const EngineStats& e) const {
  std::string out;
  gauge(out, "strata_queue_depth", "Requests waiting in the engine's queue.", "gauge", e.waiting);
  gauge(out, "strata_running_requests", "Requests the engine is running (holding memory).", "gauge", e.running);
  gauge(out, "strata_kv_pages_used", "Attention KV pages in use.", "gauge", e.kv_pages_used);
  gauge(out, "strata_kv_pages_total", "Attention KV pages in the pool.", "gauge", e.kv_pages_total);
  gauge(out, "strata_state_slots_used", "Mamba state slots in use.", "gauge", e.state_slots_used);
  gauge(out, "strata_state_slots_total", "Mamba state slots in the pool.", "gauge", e.state_slots_total);
  gauge(out, "strata_preemptions_total", "Requests evicted and later recomputed.", "counter", e.preemptions);
  gauge(out, "strata_engine_prompt_tokens_total", "Prompt tokens submitted to the engine.", "counter", e.prompt_tokens);
  gauge(out, "strata_prefix_cache_hit_tokens_total", "Prompt tokens served from the prefix cache.", "counter", e.prefix_hit_tokens);
  gauge(out, "strata_engine_generated_tokens_total", "Tokens the engine generated.", "counter", e.generated_tokens);
  std::lock_guard lk(mu_);
  gauge(out, "strata_prompt_tokens_total", "Prompt tokens of finished requests.", "counter", prompt_tokens_);
  gauge(out, "strata_completion_tokens_total", "Completion tokens of finished requests.", "counter", completion_tokens_);
  out += "# HELP strata_requests_total Finished generation requests by finish reason.\n# TYPE strata_requests_total counter\n";
  for (auto& [r, n] : finished_) out += fmt::format("strata_requests_total{{finish_reason=\"{}\"}} {}\n", r, n);
  out += "# HELP strata_http_responses_total HTTP responses by status code.\n# TYPE strata_http_responses_total counter\n";
  for (auto& [s, n] : http_) out += fmt::format("strata_http_responses_total{{code=\"{}\"}} {}\n", s, n);
  out += ttft_.render("strata_time_to_first_token_seconds", "Time from a request's arrival to its first token.");
  out += itl_.render("strata_inter_token_latency_seconds", "Time between consecutive tokens of a request.");
  return out;
}

}  // namespace strata
