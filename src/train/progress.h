#pragma once
// A one-line progress bar on stderr when it is a terminal (step, loss, lr, tokens/s, ETA); plain log
// lines every `log_every` steps otherwise (CI logs, files).
#include <chrono>
#include <cstdint>
#include <string>

namespace strata {

class Progress {
 public:
  Progress(int64_t total, int64_t start, int log_every);
  void update(int64_t step, float loss, float lr, double tokens_per_s, const std::string& extra = "");
  void message(const std::string& line);  // a log line that doesn't break the bar
  void finish();

 private:
  int64_t total_, start_;
  int log_every_;
  bool tty_;
  bool bar_shown_ = false;
  std::chrono::steady_clock::time_point t0_;
};

std::string format_duration(double seconds);

}  // namespace strata
