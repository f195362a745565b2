// The real-time executor under planner load (issue 10, item 6): a controller at 1 kHz (a small
// MLP over the observation, the plan latent, the hand-off action and the plan's age) with a
// planner at 10 Hz burning 60 ms of CPU per call in a 512 x 512 matrix-vector loop (a stand-in for
// a model's forward: it also takes caches and memory bandwidth), on a recorded observation stream.
// Prints the latency table and appends metrics.jsonl lines. A plain main, not Google Benchmark.
//
//   realtime_bench [--seconds 10] [--control-hz 1000] [--planner-hz 10] [--planner-ms 60]
//                  [--policy hold|ensemble|rtc] [--stride 10] [--controller-cpu N] [--planner-cpu N]
//                  [--no-fifo] [--no-mlock] [--metrics PATH]
#include <time.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "infer/realtime/executor.h"
#include "infer/realtime/recorded_stream.h"

using namespace strata::rt;

namespace {

int64_t thread_cpu_ns() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

class MatvecPlanner : public Planner {
 public:
  MatvecPlanner(double burn_ms, int n) : burn_ns_(int64_t(burn_ms * 1e6)), n_(n), w_(size_t(n) * n), x_(size_t(n)), y_(size_t(n)) {
    for (size_t i = 0; i < w_.size(); ++i) w_[i] = float((i * 2654435761u) % 1000) * 1e-6f;
    for (int i = 0; i < n; ++i) x_[size_t(i)] = 1.0f / float(i + 1);
  }
  void plan(const Observation& obs, PlanRecord& out) override {
    const int64_t until = thread_cpu_ns() + burn_ns_;
    do {
      for (int r = 0; r < n_; ++r) {
        float acc = 0;
        const float* row = w_.data() + size_t(r) * n_;
        for (int c = 0; c < n_; ++c) acc += row[c] * x_[size_t(c)];
        y_[size_t(r)] = std::tanh(acc);
      }
      std::swap(x_, y_);
    } while (thread_cpu_ns() < until);
    for (int i = 0; i < out.shape.latent_dim; ++i) out.latent[i] = x_[size_t(i)] + obs.x[size_t(i) % obs.x.size()];
    for (int j = 0; j < out.shape.chunk_len; ++j)
      for (int a = 0; a < out.shape.action_dim; ++a)
        out.chunk[j * out.shape.action_dim + a] = std::sin(0.01f * float(obs.tick + j) + float(a));
  }

 private:
  int64_t burn_ns_;
  int n_;
  std::vector<float> w_, x_, y_;
};

// in = [obs, latent, hand-off action, age] -> hidden (tanh) -> action. Weights allocated up front.
class MlpController : public Controller {
 public:
  MlpController(int obs_dim, int latent_dim, int action_dim, int hidden)
      : in_(obs_dim + latent_dim + action_dim + 1), hidden_(hidden), act_(action_dim),
        w1_(size_t(in_) * hidden), w2_(size_t(hidden) * action_dim), x_(size_t(in_)), h_(size_t(hidden)),
        obs_dim_(obs_dim), latent_dim_(latent_dim) {
    for (size_t i = 0; i < w1_.size(); ++i) w1_[i] = float(int(i % 17) - 8) * 0.01f;
    for (size_t i = 0; i < w2_.size(); ++i) w2_[i] = float(int(i % 13) - 6) * 0.01f;
  }
  void act(const Observation& obs, const PlanView& plan, int64_t age, std::span<float> out) override {
    size_t k = 0;
    for (int i = 0; i < obs_dim_; ++i) x_[k++] = obs.x[size_t(i)];
    for (int i = 0; i < latent_dim_; ++i) x_[k++] = plan.plan ? plan.plan->latent[i] : 0.0f;
    for (int i = 0; i < act_; ++i) x_[k++] = plan.action ? plan.action[i] : 0.0f;
    x_[k++] = float(age) * 1e-3f;
    for (int j = 0; j < hidden_; ++j) {
      float acc = 0;
      for (int i = 0; i < in_; ++i) acc += w1_[size_t(i) * hidden_ + j] * x_[size_t(i)];
      h_[size_t(j)] = std::tanh(acc);
    }
    for (int a = 0; a < act_; ++a) {
      float acc = plan.action ? plan.action[a] : 0.0f;  // residual on the planner's action
      for (int j = 0; j < hidden_; ++j) acc += w2_[size_t(j) * act_ + a] * h_[size_t(j)];
      out[size_t(a)] = acc;
    }
  }

 private:
  int in_, hidden_, act_;
  std::vector<float> w1_, w2_, x_, h_;
  int obs_dim_, latent_dim_;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr, "realtime_bench: %s\n(see the header of bench/realtime_bench.cpp for the options)\n", why);
  std::exit(2);
}

double number(int& i, int argc, char** argv) {
  if (i + 1 >= argc) usage((std::string(argv[i]) + " needs a value").c_str());
  char* end = nullptr;
  const double v = std::strtod(argv[++i], &end);
  if (*end != '\0' || !std::isfinite(v)) usage((std::string(argv[i - 1]) + ": not a number: " + argv[i]).c_str());
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  ExecutorConfig cfg;
  cfg.seconds = 10;
  cfg.action_dim = 4;
  cfg.handoff.policy = HandoffPolicy::rtc;
  cfg.handoff.stride = 10;  // 16-row chunks at 100 Hz, 160 ms each: overlap with the next plan
  double planner_ms = 60;
  const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  if (cpus >= 2) cfg.planner_cpu = 0, cfg.controller_cpu = 1;  // "the planner on the other core"
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--seconds") cfg.seconds = number(i, argc, argv);
    else if (a == "--control-hz") cfg.control_hz = number(i, argc, argv);
    else if (a == "--planner-hz") cfg.planner_hz = number(i, argc, argv);
    else if (a == "--planner-ms") planner_ms = number(i, argc, argv);
    else if (a == "--stride") cfg.handoff.stride = int(number(i, argc, argv));
    else if (a == "--controller-cpu") cfg.controller_cpu = int(number(i, argc, argv));
    else if (a == "--planner-cpu") cfg.planner_cpu = int(number(i, argc, argv));
    else if (a == "--no-fifo") cfg.realtime = false;
    else if (a == "--no-mlock") cfg.lock_memory = false;
    else if (a == "--metrics" && i + 1 < argc) cfg.metrics_path = argv[++i];
    else if (a == "--policy" && i + 1 < argc) {
      try {
        cfg.handoff.policy = parse_handoff_policy(argv[++i]);
      } catch (const strata::Error& e) {
        usage(e.what());
      }
    } else usage(("unknown option " + a).c_str());
  }
  const int obs_dim = 39;  // Meta-World's state observation
  const PlanShape shape{32, 16, cfg.action_dim};
  std::vector<float> values;
  std::vector<int64_t> stamps;
  const int64_t n = int64_t(cfg.seconds * 500) + 1;  // a 500 Hz recording
  for (int64_t s = 0; s < n; ++s) {
    stamps.push_back(s * 2'000'000);
    for (int j = 0; j < obs_dim; ++j) values.push_back(std::sin(0.002f * float(s) + float(j)));
  }
  try {
    const RecordedStream stream(std::move(values), std::move(stamps), obs_dim);
    MatvecPlanner planner(planner_ms, 512);
    MlpController controller(obs_dim, shape.latent_dim, cfg.action_dim, 64);
    std::printf("realtime_bench: %ld CPUs online; planner burns %.0f ms of CPU per call on cpu %d, controller on cpu %d\n",
                cpus, planner_ms, cfg.planner_cpu, cfg.controller_cpu);
    Executor ex(cfg, shape);
    ex.run(planner, controller, stream);
  } catch (const strata::Error& e) {
    std::fprintf(stderr, "realtime_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
