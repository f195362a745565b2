#pragma once
// Shared pieces of the real-time executor tests: a recorded observation stream, a planner that
// burns CPU and emits a recognisable chunk, and a trivial controller. Header-only, test code.
#include <time.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "infer/realtime/executor.h"
#include "infer/realtime/recorded_stream.h"

namespace strata::rt::testing {

// n samples of dim floats at `hz`: sample s holds s + 0.001 * j.
inline RecordedStream make_stream(int64_t n, int dim, double hz) {
  std::vector<float> v(static_cast<size_t>(n * dim));
  std::vector<int64_t> t(static_cast<size_t>(n));
  for (int64_t s = 0; s < n; ++s) {
    t[size_t(s)] = int64_t(std::llround(double(s) * 1e9 / hz));
    for (int j = 0; j < dim; ++j) v[size_t(s * dim + j)] = float(s) + 0.001f * float(j);
  }
  return RecordedStream(std::move(v), std::move(t), dim);
}

inline int64_t thread_cpu_ns() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// Burns `burn_ms` of its own thread's CPU time per call; row j of the chunk is obs.tick + j in
// every column, the latent is the observation's first value.
class BurnPlanner : public Planner {
 public:
  explicit BurnPlanner(double burn_ms) : burn_ns_(int64_t(burn_ms * 1e6)) {}
  void plan(const Observation& obs, PlanRecord& out) override {
    const int64_t until = thread_cpu_ns() + burn_ns_;
    volatile double sink = 0;
    while (thread_cpu_ns() < until) {
      for (int i = 0; i < 1000; ++i) sink = sink + std::sqrt(double(i));
    }
    for (int i = 0; i < out.shape.latent_dim; ++i) out.latent[i] = obs.x[0];
    for (int j = 0; j < out.shape.chunk_len; ++j)
      for (int a = 0; a < out.shape.action_dim; ++a) out.chunk[j * out.shape.action_dim + a] = float(obs.tick + j);
    ++calls;
  }
  int64_t calls = 0;

 private:
  int64_t burn_ns_;
};

// out = the hand-off action (or 0) plus the plan latent's first value; counts what it saw.
class TrivialController : public Controller {
 public:
  void act(const Observation& obs, const PlanView& plan, int64_t plan_age, std::span<float> out) override {
    (void)obs;
    (void)plan_age;
    for (size_t a = 0; a < out.size(); ++a) out[a] = plan.action ? plan.action[a] : 0.0f;
    if (plan.plan && plan.plan->shape.latent_dim > 0) out[0] += plan.plan->latent[0];
    calls += 1;
    without_action += plan.action == nullptr;
  }
  int64_t calls = 0, without_action = 0;
};

}  // namespace strata::rt::testing
