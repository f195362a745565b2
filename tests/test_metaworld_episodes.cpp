// scripts/collect_metaworld.py end to end: 2 short expert episodes of one Meta-World task, written in
// robomimic's layout, accepted by the C++ reader as a checkpoint would require it (state obs of 39,
// action dim 4), the same bytes again for the same --seed, and the same episodes after a trip through
// LeRobot's dataset layout (scripts/lerobot_to_robomimic.py). Needs the robot venv
// (python/requirements-robot.txt: metaworld, mujoco); skips visibly where it cannot be made, except
// under CI=true, where that is a failure.
#include <unistd.h>

#include <filesystem>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "core/error.h"
#include "python_oracle.h"
#include "train/episodes.h"

namespace fs = std::filesystem;
using namespace strata;
namespace st = strata::testing;

namespace {

// The robot venv's python, or "" with *why set. Built by scripts/python_env.sh, which holds a lock
// per venv: test processes that ask at once wait for the one that builds it.
std::string robot_python(std::string* why) {
  static std::string cached, cached_why;
  static bool done = false;
  if (!done) {
    done = true;
    std::string src = st::source_dir(), out;
    int rc = st::run_command(st::shell_quote(src + "/scripts/python_env.sh") + " " + st::shell_quote(src + "/python/requirements-robot.txt"),
                             &out, true);
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
    std::string venv = out.substr(out.rfind('\n') == std::string::npos ? 0 : out.rfind('\n') + 1);
    if (rc != 0)
      cached_why = "scripts/python_env.sh python/requirements-robot.txt failed (rc " + std::to_string(rc) +
                   "): " + out.substr(out.size() > 600 ? out.size() - 600 : 0);
    else if (!fs::exists(venv + "/bin/python"))
      cached_why = "scripts/python_env.sh printed '" + venv + "', which has no bin/python";
    else
      cached = venv + "/bin/python";
  }
  *why = cached_why;
  return cached;
}

bool under_ci() {
  const char* ci = std::getenv("CI");
  return ci && std::string(ci) == "true";
}

struct TempDir {
  fs::path path = fs::temp_directory_path() / ("strata_metaworld_" + std::to_string(getpid()));
  TempDir() {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

}  // namespace

TEST(MetaWorldEpisodes, CollectScriptWritesWhatTheReaderAccepts) {
  std::string why;
  std::string py = robot_python(&why);
  if (py.empty()) {
    if (under_ci()) FAIL() << "CI=true and the robot venv is unavailable: " << why;
    GTEST_SKIP() << "no robot venv (metaworld): " << why;
  }
  TempDir d;
  auto collect = [&](const std::string& out_dir) {
    std::string out;
    int rc = st::run_command(st::shell_quote(py) + " " + st::shell_quote(st::source_dir() + "/scripts/collect_metaworld.py") +
                                 " --tasks reach-v3 --episodes 2 --seed 3 --max-steps 150 --quiet --out " +
                                 st::shell_quote((d.path / out_dir).string()),
                             &out, true);
    EXPECT_EQ(rc, 0) << out;
    std::printf("%s", out.c_str());
    return (d.path / out_dir / "reach-v3.h5").string();
  };
  std::string a = collect("a"), b = collect("b");

  // What a checkpoint of a Meta-World state policy will demand of its episodes.
  EpisodeSet s = read_episodes(a, {{"state"}, {{"state", 39}}, 4});
  ASSERT_EQ(s.episodes.size(), 2u);
  for (auto& ep : s.episodes) {
    EXPECT_GT(ep.length, 1);
    EXPECT_LE(ep.length, 150);
    ASSERT_TRUE(ep.success.has_value()) << ep.name;
    EXPECT_EQ(ep.dones.back(), 1);
    for (float v : ep.actions.data) {
      EXPECT_GE(v, -1.f);
      EXPECT_LE(v, 1.f);
    }
  }
  auto env = nlohmann::json::parse(s.env_args);
  EXPECT_EQ(env["env_name"], "reach-v3");
  EXPECT_EQ(env["episodes"], 2);
  EXPECT_TRUE(env["expert_success_rate"].is_number());

  // Deterministic given --seed.
  EpisodeSet s2 = read_episodes(b);
  ASSERT_EQ(s2.episodes.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(s2.episodes[i].actions.data, s.episodes[i].actions.data);
    EXPECT_EQ(s2.episodes[i].obs.at("state").data, s.episodes[i].obs.at("state").data);
  }

  // Through LeRobot's layout and back (scripts/lerobot_to_robomimic.py): the same episodes.
  {
    std::string out, conv = st::shell_quote(py) + " " + st::shell_quote(st::source_dir() + "/scripts/lerobot_to_robomimic.py");
    std::string lr = (d.path / "lerobot").string(), back = (d.path / "back.h5").string();
    ASSERT_EQ(st::run_command(conv + " --reverse " + st::shell_quote(a) + " " + st::shell_quote(lr), &out, true), 0) << out;
    ASSERT_EQ(st::run_command(conv + " " + st::shell_quote(lr) + " " + st::shell_quote(back), &out, true), 0) << out;
    EpisodeSet r = read_episodes(back, {{"state"}, {{"state", 39}}, 4});
    ASSERT_EQ(r.episodes.size(), 2u);
    for (size_t i = 0; i < 2; ++i) {
      EXPECT_EQ(r.episodes[i].actions.data, s.episodes[i].actions.data);
      EXPECT_EQ(r.episodes[i].obs.at("state").data, s.episodes[i].obs.at("state").data);
      EXPECT_EQ(r.episodes[i].rewards, s.episodes[i].rewards);
      EXPECT_EQ(r.episodes[i].dones, s.episodes[i].dones);
    }
  }

  // ACT's inputs (scripts/lerobot_act.py): feature specs pick and slice obs keys on the way out.
  {
    std::string out, conv = st::shell_quote(py) + " " + st::shell_quote(st::source_dir() + "/scripts/lerobot_to_robomimic.py");
    std::string lr = (d.path / "lerobot_act").string(), back = (d.path / "back_act.h5").string();
    ASSERT_EQ(st::run_command(conv + " --reverse " + st::shell_quote(a) + " " + st::shell_quote(lr) +
                                  " --feature 'observation.state=state[0:4]' --feature observation.environment_state=state",
                              &out, true),
              0)
        << out;
    auto info = nlohmann::json::parse(std::ifstream(lr + "/meta/info.json"));
    EXPECT_EQ(info["features"]["observation.state"]["shape"][0], 4);
    EXPECT_EQ(info["features"]["observation.environment_state"]["shape"][0], 39);
    EXPECT_FALSE(info["features"].contains("observation.state_full"));
    ASSERT_EQ(st::run_command(conv + " " + st::shell_quote(lr) + " " + st::shell_quote(back), &out, true), 0) << out;
    EpisodeSet r = read_episodes(back, {{"environment_state", "state"}, {{"environment_state", 39}, {"state", 4}}, 4});
    for (size_t i = 0; i < 2; ++i) {
      const auto& full = s.episodes[i].obs.at("state").data;
      EXPECT_EQ(r.episodes[i].obs.at("environment_state").data, full);
      const auto& head = r.episodes[i].obs.at("state").data;
      ASSERT_EQ(head.size() * 39, full.size() * 4);
      for (size_t t = 0; t < head.size() / 4; ++t)
        for (size_t j = 0; j < 4; ++j) ASSERT_EQ(head[t * 4 + j], full[t * 39 + j]) << "t " << t << " j " << j;
    }
    // A key the file does not have is refused with the keys it has.
    int rc = st::run_command(conv + " --reverse " + st::shell_quote(a) + " " + st::shell_quote((d.path / "bad").string()) +
                                 " --feature observation.state=joints",
                             &out, true);
    EXPECT_NE(rc, 0);
    EXPECT_NE(out.find("no obs key 'joints'"), std::string::npos) << out;
    EXPECT_NE(out.find("state"), std::string::npos) << out;
  }

  // The rest of the pipeline runs on it: statistics, split, a window batch.
  EpisodeSplit split = split_episodes(2, 0.5f, 1);
  NormStats stats = compute_norm_stats(s, split.train);
  EpisodeSampler sampler(s, split.train, {2, 8}, &stats);
  WindowBatch w;
  Rng rng(1);
  sampler.sample(4, rng, w);
  for (float v : w.obs) ASSERT_TRUE(std::isfinite(v));
  EXPECT_EQ(int64_t(w.actions.size()), 4 * 8 * 4);
}

// The closed loop end to end, as the README's robotics commands run it: expert demonstrations,
// `strata train` on the shipped multi-rate config (a few steps), then scripts/eval_metaworld.py with
// the policy through the Python module in Meta-World, and the expert in the same loop. Checks the
// loop's bookkeeping (one act() call per env step, latency per call, the JSON fields), not success:
// a policy trained for 30 steps is not expected to succeed.
TEST(MetaWorldEpisodes, EvalScriptRunsATrainedPolicyInTheClosedLoop) {
  std::string why;
  std::string py = robot_python(&why);
  if (py.empty()) {
    if (under_ci()) FAIL() << "CI=true and the robot venv is unavailable: " << why;
    GTEST_SKIP() << "no robot venv (metaworld): " << why;
  }
  const char* bin = std::getenv("STRATA_BIN");
  if (!bin || !*bin) GTEST_SKIP() << "STRATA_BIN is not set (run through ctest)";
  const fs::path module = fs::path(bin).parent_path() / "python";
  bool built = false;
  if (fs::exists(module))
    for (auto& e : fs::directory_iterator(module))
      built = built || (e.path().filename().string().rfind("strata", 0) == 0 && e.path().extension() == ".so");
  if (!built) GTEST_SKIP() << "the Python module was not built (no " << module.string() << "/strata*.so; pybind11-dev)";

  TempDir d;
  const std::string src = st::source_dir(), q = st::shell_quote(py);
  std::string out;
  ASSERT_EQ(st::run_command(q + " " + st::shell_quote(src + "/scripts/collect_metaworld.py") +
                                " --tasks reach-v3 --episodes 4 --max-steps 80 --quiet --out " + st::shell_quote((d.path / "demos").string()),
                            &out, true),
            0)
      << out;
  auto tr = st::run("train " + st::shell_quote(src + "/experiments/robot/metaworld_multirate.yaml") + " " +
                        "robot.data.path=" + st::shell_quote((d.path / "demos/reach-v3.h5").string()) +
                        " train.run_dir=" + st::shell_quote((d.path / "run").string()) +
                        " train.steps=30 train.save_every=30 train.eval_every=30 train.eval_batches=1 train.log_every=10 optim.warmup=5",
                    d.path.string());
  ASSERT_EQ(tr.code, 0) << tr.out;
  const std::string ckpt = (d.path / "run/ckpt-00000030.h5").string();
  ASSERT_TRUE(fs::exists(ckpt)) << tr.out;

  auto eval = [&](const std::string& args, const std::string& json) {
    std::string o;
    int rc = st::run_command(q + " " + st::shell_quote(src + "/scripts/eval_metaworld.py") +
                                 " --task reach-v3 --episodes 2 --max-steps 25 --quiet --json " + st::shell_quote(json) + " " + args,
                             &o, true);
    EXPECT_EQ(rc, 0) << o;
    std::printf("%s", o.c_str());
    return nlohmann::json::parse(std::ifstream(json));
  };
  auto r = eval("--ckpt " + st::shell_quote(ckpt) + " --module-dir " + st::shell_quote(module.string()),
                (d.path / "strata.json").string());
  EXPECT_EQ(r["policy"], "strata");
  EXPECT_EQ(r["episodes"], 2);
  EXPECT_EQ(r["planner_hz"], 10);
  EXPECT_EQ(r["control_hz"], 80);
  // One act() per env step: the calls are the episodes' steps.
  EXPECT_EQ(r["calls"].get<double>(), 2 * r["mean_length"].get<double>());
  EXPECT_GT(r["latency_us_p50"].get<double>(), 0);
  EXPECT_GE(r["latency_us_p99"].get<double>(), r["latency_us_p50"].get<double>());
  EXPECT_GE(r["success_rate"].get<double>(), 0);
  EXPECT_LE(r["success_rate"].get<double>(), 1);

  auto e = eval("--expert", (d.path / "expert.json").string());
  EXPECT_EQ(e["policy"], "expert");
  EXPECT_FALSE(e.contains("latency_us_p50"));
  EXPECT_TRUE(e["mean_return"].is_number());

  // A missing checkpoint is refused with its path.
  std::string o;
  int rc = st::run_command(q + " " + st::shell_quote(src + "/scripts/eval_metaworld.py") + " --task reach-v3 --episodes 1 --ckpt " +
                               st::shell_quote(src + "/no/such/ckpt.h5") + " --module-dir " + st::shell_quote(module.string()),
                           &o, true);
  EXPECT_NE(rc, 0);
  EXPECT_NE(o.find("no/such/ckpt.h5"), std::string::npos) << o;
}
