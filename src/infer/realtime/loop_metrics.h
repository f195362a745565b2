#pragma once
// What the executor records per tick (into rings allocated before the loop starts), and the
// summaries it derives at exit: percentiles, the metrics.jsonl lines and the printed table.
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace strata::rt {

struct ControlTick {
  int64_t tick = 0;
  int64_t deadline_ns = 0;  // executor clock (ns since the start)
  int64_t wake_ns = 0;      // when the thread actually woke: jitter = wake - deadline
  int64_t end_ns = 0;       // when its work was done: latency = end - wake
  int64_t plan_seq = 0;     // the plan it used (0: none yet)
  int64_t plan_age = -1;    // tick - the plan's obs_tick, in control ticks (-1: no plan)
  int32_t minor_faults = 0;  // this thread's page faults since the previous tick (getrusage)
  int32_t major_faults = 0;
  bool missed = false;      // end - deadline > period: the work ran into the next tick's slot
  bool new_plan = false;    // a plan arrived at this tick
  int64_t latency_ns() const { return end_ns - wake_ns; }
  int64_t jitter_ns() const { return wake_ns - deadline_ns; }
};

struct PlannerTick {
  int64_t tick = 0;
  int64_t deadline_ns = 0, wake_ns = 0, end_ns = 0;
  int64_t obs_tick = 0;
  int64_t skipped = 0;  // planner deadlines passed over after this one overran
};

struct Quantiles {
  int64_t n = 0;
  double p50 = 0, p99 = 0, p999 = 0, max = 0, mean = 0;
};
Quantiles quantiles(std::vector<double> v);  // nearest rank; empty -> all zero

struct LoopSummary {
  double control_hz = 0, planner_hz = 0, seconds = 0;
  std::string policy;
  int64_t ticks = 0, misses = 0, ticks_without_plan = 0, plans_used = 0, exhausted_ticks = 0;
  // A miss is either the tick's own work taking longer than a period (compute) or the thread
  // waking so late that the work ended past the next deadline (preemption, a stalled host).
  int64_t misses_compute = 0, misses_late_wake = 0;
  double host_steal_ms = -1;  // during the run (rt_thread.h host_steal_ms); -1: unknown
  Quantiles latency_us, jitter_us, plan_age_ticks, delay_ticks;  // delay: plan age at arrival
  int64_t minor_faults = 0, major_faults = 0, ticks_with_faults = 0;
  int64_t planner_ticks = 0, planner_skipped = 0;
  Quantiles planner_latency_ms;
  bool memory_locked = false, controller_fifo = false, planner_fifo = false;
};

LoopSummary summarize(const std::vector<ControlTick>& ticks, int64_t n_ticks, const std::vector<PlannerTick>& plans,
                      int64_t n_plans, double period_ns);
// One JSON object per line: "controller", "planner" and "setup" records; appended to path.
void write_metrics_jsonl(const std::string& path, const LoopSummary& s);
void print_table(std::FILE* out, const LoopSummary& s);

}  // namespace strata::rt
