#include "train/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

namespace strata {

std::string format_duration(double s) {
  if (s < 0 || s > 1e7) return "?";
  int64_t t = int64_t(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02}m", t / 3600, (t / 60) % 60);
  if (t >= 60) return fmt::format("{}m{:02}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

Progress::Progress(int64_t total, int64_t start, int log_every)
    : total_(total), start_(start), log_every_(log_every), tty_(isatty(STDERR_FILENO)), t0_(std::chrono::steady_clock::now()) {}

void Progress::update(int64_t step, float loss, float lr, double tps, const std::string& extra) {
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  int64_t done = step - start_;
  double eta = done > 0 ? elapsed / double(done) * double(total_ - step) : -1;
  std::string tail = fmt::format("loss {:.4f} lr {:.2e} {:.0f} tok/s ETA {}{}", loss, lr, tps, format_duration(eta), extra);
  if (tty_) {
    const int width = 24;
    int fill = total_ > 0 ? int(double(step) / double(total_) * width) : width;
    std::string bar(size_t(fill), '=');
    bar.resize(width, ' ');
    std::fprintf(stderr, "\r\033[K%6ld/%ld [%s] %s", long(step), long(total_), bar.c_str(), tail.c_str());
    std::fflush(stderr);
    bar_shown_ = true;
  } else if (step % log_every_ == 0 || step == total_) {
    std::fprintf(stderr, "step %ld/%ld %s\n", long(step), long(total_), tail.c_str());
  }
}

void Progress::message(const std::string& line) {
  if (bar_shown_) std::fprintf(stderr, "\r\033[K");
  std::fprintf(stderr, "%s\n", line.c_str());
  bar_shown_ = false;
}

void Progress::finish() {
  if (bar_shown_) std::fprintf(stderr, "\n");
  bar_shown_ = false;
}

}  // namespace strata
