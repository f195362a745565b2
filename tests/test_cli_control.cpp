// `strata control bench` (tools/control.cpp) end to end: a tiny two-rate policy trained through the
// CLI on generated episodes, run in the real-time executor for about a second. Structure only (the
// table printed, metrics.jsonl's records and fields, tick counts that agree with each other);
// nothing here asserts a rate or a latency. Bad input exits 2 with the reason.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli.h"
#include "robot_testing.h"
#include "train/episodes.h"

namespace fs = std::filesystem;

namespace strata {
namespace {

using testing::run;

// One directory, one trained checkpoint, shared by the tests below (training through the CLI is
// the slow part).
class CliControl : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(testing::scratch_dir("control"));
    testing::write_reach_episodes(*dir_ + "/eps.h5", 6, 40);
    testing::write_text(*dir_ + "/robot.yaml", testing::robot_yaml("eps.h5", "run", 6));
    auto r = run("train robot.yaml --quiet robot.handoff=rtc train.eval_batches=2 train.log_every=3 optim.warmup=2", *dir_);
    trained_ = new testing::RunResult(r);
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
    delete trained_;
  }
  static std::string* dir_;
  static testing::RunResult* trained_;
};
std::string* CliControl::dir_ = nullptr;
testing::RunResult* CliControl::trained_ = nullptr;

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

void expect_quantiles(const nlohmann::json& q, const std::string& what) {
  for (const char* k : {"n", "p50", "p99", "p99.9", "max", "mean"}) EXPECT_TRUE(q.contains(k)) << what << " lacks " << k;
  if (q.contains("p50") && q.contains("max")) {
    EXPECT_LE(q["p50"].get<double>(), q["max"].get<double>()) << what;
  }
}

void expect_run(const testing::RunResult& r, const std::string& out_dir, bool single_rate) {
  ASSERT_EQ(r.code, 0) << r.out;
  for (const char* s : {"control latency (us)", "control jitter (us)", "plan age (ticks)", "planner latency (ms)",
                        "deadline misses", "page faults"})
    EXPECT_NE(r.out.find(s), std::string::npos) << "table lacks '" << s << "':\n" << r.out;
  auto lines = read_jsonl(out_dir + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), 3u) << "one setup, controller and planner record per run";
  EXPECT_EQ(lines[0]["kind"], "setup");
  EXPECT_EQ(lines[1]["kind"], "controller");
  EXPECT_EQ(lines[2]["kind"], "planner");
  const auto& setup = lines[0];
  for (const char* k : {"control_hz", "planner_hz", "seconds", "policy", "memory_locked", "controller_fifo"})
    EXPECT_TRUE(setup.contains(k)) << k;
  const auto& c = lines[1];
  for (const char* k : {"ticks", "deadline_misses", "plans_used", "minor_faults", "major_faults"})
    ASSERT_TRUE(c.contains(k)) << k;
  for (const char* k : {"latency_us", "jitter_us", "plan_age_ticks"}) expect_quantiles(c[k], k);
  const int64_t ticks = c["ticks"].get<int64_t>();
  EXPECT_GT(ticks, 0);
  EXPECT_EQ(c["latency_us"]["n"].get<int64_t>(), ticks);  // every tick is measured
  EXPECT_GE(c["deadline_misses"].get<int64_t>(), 0);
  EXPECT_LE(c["deadline_misses"].get<int64_t>(), ticks);
  const auto& p = lines[2];
  ASSERT_TRUE(p.contains("ticks"));
  expect_quantiles(p["latency_ms"], "planner latency_ms");
  EXPECT_GE(p["ticks"].get<int64_t>(), single_rate ? 0 : 1);  // single-rate: the planner thread idles
  if (!single_rate) {
    EXPECT_LE(c["plans_used"].get<int64_t>(), p["ticks"].get<int64_t>() + 1);  // + the warm start
  }
}

TEST_F(CliControl, BenchRunsTheTrainedPolicyAndWritesMetrics) {
  ASSERT_EQ(trained_->code, 0) << trained_->out;
  auto r = run("control bench run --seconds 1 --control-hz 200 --out out --no-fifo --no-mlock", *dir_);
  expect_run(r, *dir_ + "/out", false);
  EXPECT_NE(r.out.find("two-rate"), std::string::npos) << r.out;
  // The checkpoint's own rates and episodes by default; a second run replaces metrics.jsonl.
  auto d = run("control bench run --seconds 0.5 --handoff ensemble --out out --no-fifo --no-mlock", *dir_);
  expect_run(d, *dir_ + "/out", false);
  EXPECT_NE(d.out.find("hand-off ensemble"), std::string::npos) << d.out;
}

TEST_F(CliControl, SingleRateRunsInLine) {
  ASSERT_EQ(trained_->code, 0) << trained_->out;
  auto r = run("control bench run --single-rate --seconds 1 --control-hz 100 --episodes eps.h5 --out sr --no-fifo --no-mlock",
               *dir_);
  expect_run(r, *dir_ + "/sr", true);
  EXPECT_NE(r.out.find("single-rate"), std::string::npos) << r.out;
}

TEST_F(CliControl, HelpListsTheOptions) {
  auto r = run("control bench --help", *dir_);
  EXPECT_EQ(r.code, 0) << r.out;
  for (const char* s : {"--episodes", "--seconds", "--handoff", "--planner-hz", "--control-hz", "--out", "--threads",
                        "--single-rate"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s << "\n" << r.out;
}

TEST_F(CliControl, BadInputIsRefusedWithTheReason) {
  ASSERT_EQ(trained_->code, 0) << trained_->out;
  auto missing = run("control bench nope.h5 --seconds 0.2", *dir_);
  EXPECT_EQ(missing.code, 2) << missing.out;
  EXPECT_NE(missing.out.find("nope.h5"), std::string::npos) << missing.out;
  EXPECT_NE(missing.out.find("does not exist"), std::string::npos) << missing.out;

  auto handoff = run("control bench run --seconds 0.2 --handoff smooth --no-fifo --no-mlock", *dir_);
  EXPECT_EQ(handoff.code, 2) << handoff.out;
  EXPECT_NE(handoff.out.find("smooth"), std::string::npos) << handoff.out;

  auto eps = run("control bench run --seconds 0.2 --episodes missing.h5 --no-fifo --no-mlock", *dir_);
  EXPECT_EQ(eps.code, 2) << eps.out;
  EXPECT_NE(eps.out.find("missing.h5"), std::string::npos) << eps.out;

  // A language checkpoint is not a robot policy.
  testing::write_text(*dir_ + "/lm.yaml", testing::tiny_config("", 2));
  auto lm_train = run("train lm.yaml --quiet train.run_dir=lm", *dir_);
  ASSERT_EQ(lm_train.code, 0) << lm_train.out;
  auto lm = run("control bench lm --seconds 0.2", *dir_);
  EXPECT_EQ(lm.code, 2) << lm.out;
  EXPECT_NE(lm.out.find("not a robot policy"), std::string::npos) << lm.out;
}

}  // namespace
}  // namespace strata
