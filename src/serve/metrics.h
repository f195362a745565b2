#pragma once
// The server's Prometheus metrics (GET /metrics, text format 0.0.4): the engine's gauges (queue
// depth, running requests, KV pages and state slots in use), request counters by finish reason and
// by HTTP status, token counters, and histograms of time to first token and inter-token latency.
// Thread-safe: HTTP threads and the engine's thread record into it at once.
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "infer/engine.h"

namespace strata {

// A Prometheus histogram: cumulative counts per upper bound, plus +Inf, sum and count.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  // The text lines of `name` (its # HELP and # TYPE lines included).
  std::string render(const std::string& name, const std::string& help) const;
  int64_t count() const { return count_; }

 private:
  std::vector<double> bounds_;
  std::vector<int64_t> counts_;  // per bound, not cumulative; the last is +Inf
  double sum_ = 0;
  int64_t count_ = 0;
};

class ServeMetrics {
 public:
  ServeMetrics();
  void observe_ttft(double seconds);
  void observe_inter_token(double seconds);
  // A generation ended: "stop", "length", "cancelled" (client gone), "timeout", "error".
  void request_finished(const std::string& finish_reason, int64_t prompt_tokens, int64_t completion_tokens);
  void http_response(int status);
  int64_t finished(const std::string& finish_reason) const;
  std::string render(const EngineStats& engine) const;

 private:
  mutable std::mutex mu_;
  Histogram ttft_, itl_;
  std::map<std::string, int64_t> finished_;
  std::map<int, int64_t> http_;
  int64_t prompt_tokens_ = 0, completion_tokens_ = 0;
};

}  // namespace strata
