// The executor holds its rate under planner load: a planner burning 60 ms of CPU per call at
// 10 Hz and a trivial controller at 1 kHz for 2 s. No wall-clock assertion: the test checks the
// structure of what was recorded (every tick, plan ages, misses consistent with the latencies, a
// well-formed metrics.jsonl) and prints the latency table; the figures go to the report.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"
#include "infer/realtime/rt_thread.h"
#include "realtime_testing.h"

using namespace strata;
using namespace strata::rt;
using namespace strata::rt::testing;

namespace {
ExecutorConfig base_config() {
  ExecutorConfig cfg;
  cfg.control_hz = 1000;
  cfg.planner_hz = 10;
  cfg.seconds = 2.0;
  cfg.action_dim = 4;
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  cfg.lock_memory = false;  // mlockall would fault in the sanitizer's shadow memory
#endif
  return cfg;
}
}  // namespace

TEST(RealtimeExecutor, HoldsItsStructureUnderPlannerLoad) {
  for (HandoffPolicy policy : {HandoffPolicy::rtc, HandoffPolicy::ensemble}) {
    ExecutorConfig cfg = base_config();
    cfg.handoff.policy = policy;
    cfg.handoff.stride = 10;  // 16 rows x 10 ticks: each chunk spans 160 ticks, plans come every 100
    const std::string path = (std::filesystem::temp_directory_path() /
                              ("strata_rt_metrics_" + std::to_string(::getpid()) + ".jsonl")).string();
    std::filesystem::remove(path);
    cfg.metrics_path = path;
    const PlanShape shape{8, 16, 4};
    const RecordedStream stream = make_stream(4000, 39, 1000.0);
    BurnPlanner planner(60.0);
    TrivialController controller;
    Executor ex(cfg, shape);
    const LoopSummary s = ex.run(planner, controller, stream);

    const int64_t n = 2000, period = ex.period_ns();
    ASSERT_EQ(s.ticks, n);
    EXPECT_EQ(controller.calls, n);
    EXPECT_EQ(controller.without_action, 0);  // warm start: a chunk from tick 0 on
    EXPECT_EQ(s.ticks_without_plan, 0);
    const auto& ticks = ex.control_ticks();
    int64_t misses = 0, compute_misses = 0, new_plans = 0;
    for (int64_t k = 0; k < n; ++k) {
      const ControlTick& t = ticks[size_t(k)];
      ASSERT_EQ(t.tick, k);
      ASSERT_EQ(t.deadline_ns, k * period);
      ASSERT_GE(t.wake_ns, t.deadline_ns) << "woke before its absolute deadline at tick " << k;
      ASSERT_GE(t.end_ns, t.wake_ns);
      ASSERT_GE(t.plan_age, 0);
      ASSERT_EQ(t.missed, t.end_ns - t.deadline_ns > period) << k;
      if (t.latency_ns() > period) {
        ASSERT_TRUE(t.missed) << k;
      }
      misses += t.missed;
      compute_misses += t.missed && t.latency_ns() > period;
      new_plans += t.new_plan;
      if (k > 0) {
        const ControlTick& p = ticks[size_t(k - 1)];
        ASSERT_GE(t.plan_seq, p.plan_seq) << k;
        if (t.plan_seq == p.plan_seq) {
          ASSERT_EQ(t.plan_age, p.plan_age + 1) << "plan age not monotone between plan updates at tick " << k;
          ASSERT_FALSE(t.new_plan);
        } else {
          ASSERT_TRUE(t.new_plan);
          ASSERT_LE(t.plan_age, p.plan_age) << "a newer plan must be younger, tick " << k;
        }
      }
    }
    EXPECT_EQ(misses, s.misses);
    EXPECT_EQ(s.misses_compute, compute_misses);
    EXPECT_EQ(s.misses_late_wake, misses - compute_misses);
    EXPECT_EQ(new_plans, s.plans_used);
    EXPECT_GE(s.plans_used, 2);  // the warm-start plan and at least one from the planner thread
    EXPECT_EQ(planner.calls, 1 + ex.planner_ticks_recorded());
    for (int64_t i = 0; i < ex.planner_ticks_recorded(); ++i) {
      const PlannerTick& p = ex.planner_ticks()[size_t(i)];
      EXPECT_EQ(p.obs_tick, p.deadline_ns / period);
      EXPECT_GE(p.end_ns, p.wake_ns);
    }

    // metrics.jsonl: three JSON lines, numbers agreeing with the summary
    std::ifstream f(path);
    std::string line;
    int lines = 0;
    bool saw_controller = false;
    while (std::getline(f, line)) {
      ++lines;
      const nlohmann::json j = nlohmann::json::parse(line);  // throws on a malformed line
      ASSERT_TRUE(j.contains("kind"));
      if (j["kind"] == "controller") {
        saw_controller = true;
        EXPECT_EQ(j["ticks"].get<int64_t>(), n);
        EXPECT_EQ(j["deadline_misses"].get<int64_t>(), s.misses);
        for (const char* key : {"latency_us", "jitter_us", "plan_age_ticks"})
          for (const char* q : {"p50", "p99", "p99.9", "max"}) EXPECT_TRUE(j[key].contains(q)) << key << " " << q;
        EXPECT_TRUE(j.contains("minor_faults"));
        EXPECT_TRUE(j.contains("major_faults"));
      }
    }
    EXPECT_EQ(lines, 3);
    EXPECT_TRUE(saw_controller);
    std::filesystem::remove(path);
  }
}

TEST(RealtimeExecutor, RecordedStreamReplaysNewestSample) {
  const RecordedStream s = make_stream(3, 2, 10.0);  // samples at 0, 100, 200 ms
  float x[2];
  EXPECT_EQ(s.read(-5, x), 0);
  EXPECT_EQ(x[0], 0.0f);
  EXPECT_EQ(s.read(150'000'000, x), 100'000'000);
  EXPECT_EQ(x[0], 1.0f);
  EXPECT_FLOAT_EQ(x[1], 1.001f);
  EXPECT_EQ(s.read(9'000'000'000, x), 200'000'000);
  EXPECT_EQ(x[0], 2.0f);
}

TEST(RealtimeExecutor, BadRatesAreRefusedWithTheKey) {
  ExecutorConfig cfg = base_config();
  cfg.planner_hz = 2000;
  try {
    Executor ex(cfg, PlanShape{4, 0, 0});
    FAIL() << "planner faster than the controller accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("robot.planner_hz"), std::string::npos) << e.what();
  }
  cfg = base_config();
  cfg.control_hz = 0;
  EXPECT_THROW(Executor(cfg, PlanShape{4, 0, 0}), InputError);
}

// A miss is the tick's own work running over a period (compute) or a wake-up so late that the
// work ended past the next deadline (late wake); hand-made ticks at 1 ms give one of each.
TEST(RealtimeExecutor, MissesSplitIntoComputeAndLateWake) {
  const int64_t ms = 1'000'000;
  std::vector<ControlTick> t(4);
  for (int64_t k = 0; k < 4; ++k) t[size_t(k)].tick = k, t[size_t(k)].deadline_ns = k * ms, t[size_t(k)].plan_age = k;
  t[0].wake_ns = 10'000, t[0].end_ns = 50'000;                  // on time
  t[1].wake_ns = ms + 10'000, t[1].end_ns = ms + 1'200'000;      // 1.19 ms of work: compute
  t[2].wake_ns = 2 * ms + 1'500'000, t[2].end_ns = 2 * ms + 1'520'000;  // 1.5 ms late, 20 us of work
  t[3].wake_ns = 3 * ms + 900'000, t[3].end_ns = 3 * ms + 990'000;      // late but inside its period
  for (auto& x : t) x.missed = x.end_ns - x.deadline_ns > ms;
  LoopSummary s = summarize(t, 4, {}, 0, double(ms));
  EXPECT_EQ(s.misses, 2);
  EXPECT_EQ(s.misses_compute, 1);
  EXPECT_EQ(s.misses_late_wake, 1);
  if (std::filesystem::exists("/proc/stat")) {
    EXPECT_GE(host_steal_ms(), 0.0);
  }
}

// Spinning the last part of each period (ExecutorConfig::spin_ns) still wakes at or after every
// deadline, never before, and every tick is recorded; with spin_ns >= the period the thread never sleeps.
TEST(RealtimeExecutor, SpinningBeforeTheDeadlineNeverWakesEarly) {
  for (int64_t spin : {int64_t(300'000), int64_t(2'000'000)}) {
    ExecutorConfig cfg = base_config();
    cfg.seconds = 0.3;
    cfg.spin_ns = spin;
    cfg.print_table = false;
    const PlanShape shape{8, 16, 4};
    const RecordedStream stream = make_stream(400, 39, 1000.0);
    BurnPlanner planner(5.0);
    TrivialController controller;
    Executor ex(cfg, shape);
    const LoopSummary s = ex.run(planner, controller, stream);
    ASSERT_EQ(s.ticks, 300);
    EXPECT_EQ(controller.calls, 300);
    const auto& ticks = ex.control_ticks();
    for (int64_t k = 0; k < 300; ++k) {
      ASSERT_EQ(ticks[size_t(k)].deadline_ns, k * ex.period_ns());
      ASSERT_GE(ticks[size_t(k)].wake_ns, ticks[size_t(k)].deadline_ns) << "spin " << spin << " tick " << k;
    }
  }
}
