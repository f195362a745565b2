#pragma once
// The real-time executor (issue 10, item 6): a planner on its own thread at planner_hz and a
// controller on its own thread at control_hz, both sleeping to absolute deadlines on
// CLOCK_MONOTONIC, the plan handed over through a PlanBuffer (wait-free) and turned into the
// tick's action by a Handoff policy. Everything the controller loop touches is allocated before
// the clock starts; the loop itself allocates nothing, takes no lock and does no I/O (the
// page-fault counters are read with getrusage after each tick's timed region).
//
// Ticks are never skipped: a late tick runs at once and counts as a miss when its work ends
// after the next tick's deadline (end - deadline > period). The planner, when it overruns, skips
// to its next future deadline and counts the skipped ones.
#include <cstdint>
#include <string>
#include <vector>

#include "infer/realtime/handoff.h"
#include "infer/realtime/interfaces.h"
#include "infer/realtime/loop_metrics.h"

namespace strata::rt {

struct ExecutorConfig {
  double control_hz = 1000.0;
  double planner_hz = 10.0;
  double seconds = 2.0;          // run length: round(seconds * control_hz) control ticks
  int action_dim = 0;            // the controller's output
  HandoffConfig handoff;
  int handoff_chunks = 0;        // ensemble: chunks kept; 0: as many as can overlap one tick
  bool warm_start = true;        // one plan from the observation at time 0 before the clock starts
  bool lock_memory = true;       // mlockall(MCL_CURRENT | MCL_FUTURE) for the run (undone after)
  bool realtime = true;          // SCHED_FIFO for the controller (and the planner if planner_priority > 0)
  int controller_priority = 80;
  int planner_priority = 0;      // 0: the planner stays SCHED_OTHER, below any FIFO controller
  int planner_nice = 10;         // the planner thread's nice value (raise only): yields to the controller
  // Busy-wait the last spin_ns before each control tick instead of sleeping through it: a sleeping
  // thread lets its CPU idle, and an idle virtual CPU can take milliseconds to be woken by its host
  // (no steal time is accounted for it). 0: sleep to the deadline; >= the period: never sleep.
  int64_t spin_ns = 0;
  int controller_cpu = -1;       // pin to this CPU (-1: no pinning)
  int planner_cpu = -1;
  std::string metrics_path;      // "" : no metrics.jsonl
  bool print_table = true;       // the table on stdout at exit
  // Called on the controller thread right before the first tick and right after the last (tests
  // arm an allocation counter with them). Plain function pointers: nothing to allocate.
  void (*controller_loop_begin)() = nullptr;
  void (*controller_loop_end)() = nullptr;
};

class Executor {
 public:
  Executor(const ExecutorConfig& cfg, const PlanShape& shape);

  // One run: allocates everything, starts both threads, joins them, summarises, writes metrics
  // and prints the table. Warnings (mlockall, SCHED_FIFO, pinning refused) go to stderr, one line each.
  LoopSummary run(Planner& planner, Controller& controller, const ObservationSource& source,
                  ActionSink* sink = nullptr);

  // The last run's records (every control tick; every planner tick up to its capacity).
  const std::vector<ControlTick>& control_ticks() const { return ticks_; }
  const std::vector<PlannerTick>& planner_ticks() const { return plans_; }
  int64_t planner_ticks_recorded() const { return n_plans_; }
  int64_t period_ns() const { return control_period_ns_; }
  const ExecutorConfig& config() const { return cfg_; }

 private:
  ExecutorConfig cfg_;
  PlanShape shape_;
  int64_t control_period_ns_ = 0, planner_period_ns_ = 0, n_ticks_ = 0;
  std::vector<ControlTick> ticks_;
  std::vector<PlannerTick> plans_;
  int64_t n_plans_ = 0;
};

}  // namespace strata::rt
