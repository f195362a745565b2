#include "infer/realtime/executor.h"

#include <atomic>
#include <cmath>
#include <thread>

#include "core/error.h"
#include "infer/realtime/plan_buffer.h"
#include "infer/realtime/rt_thread.h"

namespace strata::rt {

Executor::Executor(const ExecutorConfig& cfg, const PlanShape& shape) : cfg_(cfg), shape_(shape) {
  auto positive = [](double x) { return std::isfinite(x) && x > 0; };
  if (!positive(cfg.control_hz)) throw InputError(fmt::format("robot.control_hz must be > 0, got {}", cfg.control_hz));
  if (!positive(cfg.planner_hz)) throw InputError(fmt::format("robot.planner_hz must be > 0, got {}", cfg.planner_hz));
  if (cfg.planner_hz > cfg.control_hz)
    throw InputError(fmt::format("robot.planner_hz ({}) must not exceed robot.control_hz ({})", cfg.planner_hz,
                                 cfg.control_hz));
  if (!positive(cfg.seconds)) throw InputError(fmt::format("run length must be > 0 s, got {}", cfg.seconds));
  if (cfg.action_dim < 1) throw InputError(fmt::format("action_dim must be >= 1, got {}", cfg.action_dim));
  if (shape.chunk_len > 0 && shape.action_dim < 1)
    throw InputError(fmt::format("plan shape: a chunk of {} rows needs action_dim >= 1", shape.chunk_len));
  control_period_ns_ = int64_t(std::llround(1e9 / cfg.control_hz));
  planner_period_ns_ = int64_t(std::llround(1e9 / cfg.planner_hz));
  n_ticks_ = std::max<int64_t>(1, int64_t(std::llround(cfg.seconds * cfg.control_hz)));
}

LoopSummary Executor::run(Planner& planner, Controller& controller, const ObservationSource& source,
                          ActionSink* sink) {
  // ---- everything either loop touches, allocated here ----
  const int obs_dim = source.dim();
  const int64_t cp = control_period_ns_, pp = planner_period_ns_, run_ns = n_ticks_ * cp;
  PlanBuffer buffer(shape_);
  int chunks = cfg_.handoff_chunks;
  if (chunks <= 0) {
    const double period_ticks = cfg_.control_hz / cfg_.planner_hz;
    chunks = int(std::ceil(double(shape_.chunk_len) * cfg_.handoff.stride / period_ticks)) + 1;
  }
  Handoff handoff(cfg_.handoff, shape_, std::max(chunks, 1));
  ticks_.assign(size_t(n_ticks_), ControlTick{});
  plans_.assign(size_t(std::ceil(cfg_.seconds * cfg_.planner_hz)) + 2, PlannerTick{});
  n_plans_ = 0;
  const size_t obs_n = size_t(obs_dim);
  std::vector<float> ctl_obs(obs_n), plan_obs(obs_n);
  std::vector<float> hand_action(size_t(std::max(shape_.action_dim, 1))), action(size_t(cfg_.action_dim));
  std::atomic<bool> stop{false};

  auto plan_once = [&](int64_t ptick, int64_t nominal_ns, int64_t t0) {
    Observation obs;
    obs.tick = nominal_ns / cp;
    obs.time_ns = source.read(nominal_ns, plan_obs.data());
    obs.x = {plan_obs.data(), plan_obs.size()};
    PlanRecord& rec = buffer.back();
    planner.plan(obs, rec);
    rec.planner_tick = ptick;
    rec.obs_tick = obs.tick;
    rec.obs_time_ns = obs.time_ns;
    rec.done_ns = mono_ns() - t0;
    buffer.publish();
    return obs.tick;
  };

  if (cfg_.warm_start) plan_once(0, 0, mono_ns());

  LoopSummary s;
  std::string mem_warning;
  if (cfg_.lock_memory) {
    mem_warning = lock_memory();
    s.memory_locked = mem_warning.empty();
  }
  // The clock starts a little ahead so both threads are created and set up before tick 0.
  const int64_t t0 = mono_ns() + 20'000'000;

  const double steal_start = host_steal_ms();
  std::thread ctl_thread([&] {
    prefault_stack();
    tight_timer_slack();
    Observation obs;
    obs.x = {ctl_obs.data(), ctl_obs.size()};
    FaultCount prev = thread_faults();
    if (cfg_.controller_loop_begin) cfg_.controller_loop_begin();
    for (int64_t k = 0; k < n_ticks_; ++k) {
      ControlTick& rec = ticks_[size_t(k)];
      rec.tick = k;
      rec.deadline_ns = k * cp;
      wait_until_ns(t0 + rec.deadline_ns, cfg_.spin_ns);
      rec.wake_ns = mono_ns() - t0;
      // ---- timed region ----
      obs.tick = k;
      obs.time_ns = source.read(rec.deadline_ns, ctl_obs.data());
      const bool fresh = buffer.refresh();
      const PlanRecord& plan = buffer.front();
      PlanView view;
      int64_t age = -1;
      if (plan.seq > 0) {
        view.plan = &plan;
        view.fresh = fresh;
        age = k - plan.obs_tick;
        if (shape_.chunk_len > 0) {
          if (fresh) handoff.on_plan(plan, k);
          if (handoff.action(k, hand_action.data())) view.action = hand_action.data();
        }
      }
      controller.act(obs, view, age, {action.data(), action.size()});
      if (sink) sink->apply(k, {action.data(), action.size()});
      rec.end_ns = mono_ns() - t0;
      // ---- end of timed region ----
      const FaultCount now = thread_faults();
      rec.minor_faults = int32_t(now.minor - prev.minor);
      rec.major_faults = int32_t(now.major - prev.major);
      prev = now;
      rec.plan_seq = plan.seq;
      rec.plan_age = age;
      rec.new_plan = fresh && plan.seq > 0;
      rec.missed = rec.end_ns - rec.deadline_ns > cp;
    }
    if (cfg_.controller_loop_end) cfg_.controller_loop_end();
    stop.store(true, std::memory_order_relaxed);
  });

  std::thread plan_thread([&] {
    prefault_stack();
    if (cfg_.planner_nice > 0) (void)set_thread_nice(cfg_.planner_nice);
    int64_t p = cfg_.warm_start ? 1 : 0;
    while (!stop.load(std::memory_order_relaxed)) {
      const int64_t deadline = p * pp;
      if (deadline >= run_ns) break;
      sleep_until_ns(t0 + deadline);
      if (stop.load(std::memory_order_relaxed)) break;
      const int64_t wake = mono_ns() - t0;
      const int64_t obs_tick = plan_once(p, deadline, t0);
      const int64_t end = mono_ns() - t0;
      int64_t next = p + 1;
      if (end > next * pp) next = end / pp + 1;  // overran: skip to the next future deadline
      if (n_plans_ < int64_t(plans_.size())) plans_[size_t(n_plans_++)] = {p, deadline, wake, end, obs_tick, next - p - 1};
      p = next;
    }
  });

  // Scheduling and pinning from here, on the threads' handles: one warning line each when refused.
  std::string fifo_warning, pin_warning;
  if (cfg_.realtime) {
    fifo_warning = set_fifo(ctl_thread.native_handle(), cfg_.controller_priority);
    s.controller_fifo = fifo_warning.empty();
    if (cfg_.planner_priority > 0) {
      const std::string w = set_fifo(plan_thread.native_handle(), cfg_.planner_priority);
      s.planner_fifo = w.empty();
      if (fifo_warning.empty()) fifo_warning = w;
    }
  }
  if (cfg_.controller_cpu >= 0) pin_warning = pin_cpu(ctl_thread.native_handle(), cfg_.controller_cpu);
  if (cfg_.planner_cpu >= 0 && pin_warning.empty()) pin_warning = pin_cpu(plan_thread.native_handle(), cfg_.planner_cpu);
  if (!mem_warning.empty())
    fmt::print(stderr, "warning: real-time executor: memory not locked, page faults can stall the loop: {}\n", mem_warning);
  if (!fifo_warning.empty())
    fmt::print(stderr, "warning: real-time executor: running without SCHED_FIFO, other work can preempt the loop: {}\n",
               fifo_warning);
  if (!pin_warning.empty()) fmt::print(stderr, "warning: real-time executor: threads not pinned: {}\n", pin_warning);

  ctl_thread.join();
  plan_thread.join();
  const double steal_end = host_steal_ms();
  if (s.memory_locked) unlock_memory();

  LoopSummary sum = summarize(ticks_, n_ticks_, plans_, n_plans_, double(cp));
  sum.control_hz = cfg_.control_hz;
  sum.planner_hz = cfg_.planner_hz;
  sum.seconds = double(n_ticks_) / cfg_.control_hz;
  sum.policy = shape_.chunk_len > 0 ? handoff_policy_name(cfg_.handoff.policy) : "latent only";
  sum.exhausted_ticks = handoff.exhausted_ticks();
  sum.memory_locked = s.memory_locked;
  sum.controller_fifo = s.controller_fifo;
  sum.planner_fifo = s.planner_fifo;
  sum.host_steal_ms = steal_start >= 0 && steal_end >= 0 ? steal_end - steal_start : -1;
  if (!cfg_.metrics_path.empty()) write_metrics_jsonl(cfg_.metrics_path, sum);
  if (cfg_.print_table) print_table(stdout, sum);
  return sum;
}

}  // namespace strata::rt
