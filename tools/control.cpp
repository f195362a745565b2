#include "control.h"

#include <omp.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <thread>
#include <vector>

#include "core/error.h"
#include "infer/realtime/executor.h"
#include "infer/realtime/recorded_stream.h"
#include "load/model_loader.h"
#include "train/checkpoint.h"
#include "train/episodes.h"
#include "load/robot_runtime.h"
#include "train/robot_trainer.h"

namespace fs = std::filesystem;

namespace strata {
namespace {

// The controller was trained with the plan's age counted in its own control ticks (the episodes'
// rate); at another run rate the executor's age is rescaled to those ticks before it reaches the
// model. Plain arithmetic: nothing allocated on the control thread.
class AgeScaledController final : public rt::Controller {
 public:
  AgeScaledController(rt::Controller& inner, double scale) : inner_(inner), scale_(scale) {}
  void act(const rt::Observation& obs, const rt::PlanView& plan, int64_t age, std::span<float> out) override {
    inner_.act(obs, plan, int64_t(std::floor(double(age) * scale_)), out);
  }

 private:
  rt::Controller& inner_;
  double scale_;
};

// --single-rate: the whole policy at every control tick, as a single-rate checkpoint runs (its
// planner_hz equals its control_hz): the planner's step on this tick's observation, then the
// controller on that fresh plan (age 0). The executor's own planner thread gets an idle planner.
class InlineController final : public rt::Controller {
 public:
  InlineController(RobotPlanner& planner, RobotController& controller, const rt::PlanShape& shape)
      : planner_(planner), controller_(controller), latent_(size_t(std::max(shape.latent_dim, 1))),
        chunk_(size_t(std::max<int64_t>(int64_t(shape.chunk_len) * shape.action_dim, 1))) {
    rec_.shape = shape;
    rec_.latent = latent_.data();
    rec_.chunk = chunk_.data();
  }
  void act(const rt::Observation& obs, const rt::PlanView&, int64_t, std::span<float> out) override {
    planner_.plan(obs, rec_);
    rec_.seq += 1;
    rec_.obs_tick = obs.tick;
    rt::PlanView view;
    view.plan = &rec_;
    view.action = rec_.shape.chunk_len > 0 ? rec_.chunk : nullptr;
    view.fresh = true;
    controller_.act(obs, view, 0, out);
  }

 private:
  RobotPlanner& planner_;
  RobotController& controller_;
  std::vector<float> latent_, chunk_;
  rt::PlanRecord rec_;
};

// omp_set_num_threads sets the calling thread's ICV only, and the executor's threads are its own:
// each model half sets the thread count on its own thread, once (the first call may allocate the
// thread's ICV; that is the warm-up call).
void set_omp_threads_once(int n) {
  thread_local bool set = false;
  if (!set) omp_set_num_threads(n), set = true;
}

class OmpPlanner final : public rt::Planner {
 public:
  OmpPlanner(rt::Planner& inner, int threads) : inner_(inner), threads_(threads) {}
  void plan(const rt::Observation& obs, rt::PlanRecord& out) override {
    set_omp_threads_once(threads_);
    inner_.plan(obs, out);
  }

 private:
  rt::Planner& inner_;
  int threads_;
};

class OmpController final : public rt::Controller {
 public:
  OmpController(rt::Controller& inner, int threads) : inner_(inner), threads_(threads) {}
  void act(const rt::Observation& obs, const rt::PlanView& plan, int64_t age, std::span<float> out) override {
    set_omp_threads_once(threads_);
    inner_.act(obs, plan, age, out);
  }

 private:
  rt::Controller& inner_;
  int threads_;
};

class IdlePlanner final : public rt::Planner {
 public:
  void plan(const rt::Observation&, rt::PlanRecord&) override {}
};

// The checkpoint's observation keys (sorted, as the trainer concatenates them) and actions of every
// episode, end to end, stamped at the episodes' own rate (the checkpoint's control_hz: one recorded
// step per training control tick), repeated until it covers the run.
rt::RecordedStream recorded_stream(const std::string& path, const LoadedRobot& r, double record_hz, double seconds) {
  if (!fs::exists(path)) throw InputError(fmt::format("episodes file '{}' does not exist", path));
  EpisodeExpect want;
  want.action_dim = int64_t(r.stats.actions.mean.size());
  for (auto& [k, st] : r.stats.obs) want.obs_dims[k] = int64_t(st.mean.size());
  const EpisodeSet set = read_episodes(path, want);
  const int dim = int(r.policy->obs_dim());
  std::vector<float> one;
  for (const Episode& ep : set.episodes) {
    for (int64_t t = 0; t < ep.length; ++t)
      for (auto& [k, st] : r.stats.obs) {
        auto it = ep.obs.find(k);
        if (it == ep.obs.end())
          throw InputError(fmt::format("episodes file '{}': {} has no observation '{}', which the checkpoint takes", path,
                                       ep.name, k));
        one.insert(one.end(), it->second.row(t), it->second.row(t) + it->second.dim);
      }
  }
  const int64_t n1 = int64_t(one.size()) / dim;
  if (n1 == 0) throw InputError(fmt::format("episodes file '{}' has no observations", path));
  const int64_t need = int64_t(std::ceil(seconds * record_hz)) + 1;
  std::vector<float> values;
  std::vector<int64_t> stamps;
  values.reserve(size_t(std::max(need, n1) * dim));
  for (int64_t s = 0; s < std::max(need, n1); ++s) {
    const float* row = one.data() + (s % n1) * dim;
    values.insert(values.end(), row, row + dim);
    stamps.push_back(int64_t(std::llround(double(s) * 1e9 / record_hz)));
  }
  return rt::RecordedStream(std::move(values), std::move(stamps), dim);
}

}  // namespace

CLI::App* add_control_command(CLI::App& app, ControlBenchOptions& o) {
  auto* ctl = app.add_subcommand("control", "Run a trained robot policy in the real-time executor");
  ctl->require_subcommand(1);
  auto* b = ctl->add_subcommand(
      "bench",
      "Planner and controller of a robot checkpoint on their own threads at their rates, fed by recorded "
      "observations; writes OUT/metrics.jsonl and prints the latency table");
  b->add_option("checkpoint", o.checkpoint, "robot checkpoint (.h5) or run directory")->required();
  b->add_option("--episodes", o.episodes,
                "robomimic HDF5 episodes whose observations are replayed (default: the checkpoint's robot.data.path)");
  b->add_option("--seconds", o.seconds, "run length")->capture_default_str()->check(CLI::PositiveNumber);
  b->add_option("--handoff", o.handoff, "hold | ensemble | rtc (default: the checkpoint's robot.handoff)");
  b->add_option("--planner-hz", o.planner_hz, "planner rate (default: the checkpoint's)")->check(CLI::PositiveNumber);
  b->add_option("--control-hz", o.control_hz, "controller rate (default: the checkpoint's)")->check(CLI::PositiveNumber);
  b->add_option("--out", o.out, "directory for metrics.jsonl")->capture_default_str();
  b->add_option("--threads", o.threads, "OpenMP threads (more than 1 makes the planner's tail latency worse on few cores)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  b->add_flag("--single-rate", o.single_rate,
              "run the planner and the controller in-line at every control tick (a single-rate policy)");
  b->add_option("--spin-us", o.spin_us,
                "busy-wait the last N us before each control tick instead of sleeping (on a VM an idle vCPU can "
                "wake milliseconds late; N >= the period keeps the control CPU busy all the time)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  b->add_flag("--no-fifo", o.no_fifo, "do not ask for SCHED_FIFO");
  b->add_flag("--no-mlock", o.no_mlock, "do not mlockall");
  return b;
}

int run_control_bench(const ControlBenchOptions& o) {
  omp_set_num_threads(o.threads);
  if (!fs::exists(o.checkpoint)) throw InputError(fmt::format("control bench: checkpoint '{}' does not exist", o.checkpoint));
  const std::string ckpt = resolve_checkpoint(o.checkpoint);
  LoadedRobot robot = load_robot(ckpt);
  const RobotConfig& rc = robot.config.robot;
  std::string episodes = o.episodes;
  if (episodes.empty()) {
    if (rc.data.path.empty())
      throw InputError(fmt::format("control bench: checkpoint '{}' names no episodes file (robot.data.path); pass --episodes FILE",
                                   ckpt));
    episodes = rc.data.path;
    if (!fs::exists(episodes))
      throw InputError(fmt::format("control bench: the checkpoint's episodes file '{}' (robot.data.path, relative to where it "
                                   "was trained) does not exist here; pass --episodes FILE",
                                   episodes));
  }
  rt::ExecutorConfig cfg;
  cfg.control_hz = o.control_hz > 0 ? o.control_hz : double(rc.control_hz);
  cfg.planner_hz = o.planner_hz > 0 ? o.planner_hz : double(rc.planner_hz);
  cfg.seconds = o.seconds;
  cfg.action_dim = int(robot.policy->action_dim());
  cfg.handoff.policy = rt::parse_handoff_policy(o.handoff.empty() ? rc.handoff : o.handoff);
  // One chunk row per training control tick: at a faster run rate each row covers several ticks.
  cfg.handoff.stride = std::max(1, int(std::lround(cfg.control_hz / double(rc.control_hz))));
  cfg.realtime = !o.no_fifo;
  cfg.lock_memory = !o.no_mlock;
  cfg.spin_ns = int64_t(o.spin_us * 1e3);
  // A SCHED_FIFO thread busy for more than sched_rt_runtime_us of every sched_rt_period_us (95 % by
  // default) is throttled for the rest of that period: tens of milliseconds without a tick.
  if (cfg.realtime && o.spin_us >= 0.9e6 / cfg.control_hz)
    fmt::print(stderr,
               "warning: control bench: --spin-us {} keeps the SCHED_FIFO controller busy nearly all the time; the kernel's "
               "real-time throttling (/proc/sys/kernel/sched_rt_runtime_us) will then stop it for milliseconds every "
               "second. Spin a fraction of the {:.0f} us period, or pass --no-fifo\n",
               o.spin_us, 1e6 / cfg.control_hz);
  if (std::thread::hardware_concurrency() >= 2) cfg.planner_cpu = 0, cfg.controller_cpu = 1;
  fs::create_directories(o.out);
  cfg.metrics_path = (fs::path(o.out) / "metrics.jsonl").string();
  fs::remove(cfg.metrics_path);  // the executor appends: one run per file

  const rt::RecordedStream stream = recorded_stream(episodes, robot, double(rc.control_hz), o.seconds);
  const rt::PlanShape shape = plan_shape_of(*robot.policy);
  const int64_t control_ticks = int64_t(std::llround(o.seconds * cfg.control_hz)) + 16;
  fmt::print("control bench: {} ({}) on {} ({} recorded steps at {} Hz); {} {}; planner {} Hz, controller {} Hz, "
             "hand-off {} (stride {}), {} OpenMP thread(s)\n",
             ckpt, o.single_rate ? "single-rate, in-line" : "two-rate", episodes, stream.size(), rc.control_hz,
             o.seconds, "s", o.single_rate ? 0.0 : cfg.planner_hz, cfg.control_hz,
             rt::handoff_policy_name(cfg.handoff.policy), cfg.handoff.stride, o.threads);
  std::fflush(stdout);
  RobotController controller(robot, control_ticks);
  if (o.single_rate) {
    // The planner runs on the control thread at every tick; the executor's planner thread idles at
    // 1 Hz (its rows in the table describe nothing).
    RobotPlanner inline_planner(robot, control_ticks);
    InlineController c(inline_planner, controller, shape);
    OmpController oc(c, o.threads);
    IdlePlanner idle;
    cfg.planner_hz = std::min(1.0, cfg.control_hz);
    rt::Executor ex(cfg, shape);
    ex.run(idle, oc, stream);
  } else {
    RobotPlanner planner(robot, int64_t(std::llround(o.seconds * cfg.planner_hz)) + 16);
    AgeScaledController c(controller, double(rc.control_hz) / cfg.control_hz);
    OmpPlanner op(planner, o.threads);
    OmpController oc(c, o.threads);
    rt::Executor ex(cfg, shape);
    ex.run(op, oc, stream);
  }
  fmt::print("metrics: {}\n", cfg.metrics_path);
  return 0;
}

}  // namespace strata
