// The robot trainer (train/robot_trainer.h) on a tiny generated episodes file: the loss goes down,
// checkpoints hold both halves, the normalisation statistics and the robot config, and a resumed
// run ends with exactly the parameters of an uninterrupted one.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/rng.h"
#include "robot_testing.h"
#include "train/checkpoint.h"
#include "train/config_load.h"
#include "train/robot_data.h"
#include "train/robot_trainer.h"

namespace fs = std::filesystem;

namespace strata {
namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    auto* t = ::testing::UnitTest::GetInstance()->current_test_info();
    path = fs::temp_directory_path() / ("strata_robot_" + std::to_string(getpid()) + "_" + t->name());
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { if (!std::getenv("KEEP")) fs::remove_all(path); }
  std::string operator/(const std::string& n) const { return (path / n).string(); }
};

std::vector<double> logged_losses(const std::string& run_dir) {
  std::ifstream in(run_dir + "/metrics.jsonl");
  std::vector<double> out;
  for (std::string line; std::getline(in, line);) {
    auto p = line.find("\"loss\":");
    if (p != std::string::npos && line.find("skipped") == std::string::npos) out.push_back(std::stod(line.substr(p + 7)));
  }
  return out;
}

TEST(RobotTrain, LossDecreasesAndCheckpointHoldsStatsAndConfig) {
  TempDir d;
  testing::write_reach_episodes(d / "eps.h5", 10, 40);
  Config cfg = parse_config(testing::robot_yaml(d / "eps.h5", d / "run", 150), "robot.yaml");
  TrainOptions o;
  o.quiet = true;
  TrainResult r = train(cfg, to_yaml(cfg), o);
  EXPECT_EQ(r.step, 150);
  // The same init after one step: the val loss (fixed val segments, the same every time) must fall.
  Config one = parse_config(testing::robot_yaml(d / "eps.h5", d / "one", 1), "robot.yaml");
  TrainResult r1 = train(one, to_yaml(one), o);
  auto losses = logged_losses(d / "run");
  ASSERT_GE(losses.size(), 4u);
  std::printf("  train loss: first %.4f last %.4f; val loss after 1 step %.4f, after %lld %.4f\n", losses.front(),
              losses.back(), r1.val_loss, (long long)r.step, r.val_loss);
  EXPECT_GT(r.val_loss, 0.0f);
  EXPECT_LT(r.val_loss, 0.6f * r1.val_loss);

  Checkpoint ck = load_checkpoint(r.last_checkpoint);
  ASSERT_TRUE(ck.norm_stats.has_value());
  RobotData data(cfg.robot, cfg.train.seed);
  EXPECT_EQ(*ck.norm_stats, data.stats());
  bool planner = false, controller = false;
  for (auto& a : ck.params) planner |= a.name.rfind("planner.", 0) == 0, controller |= a.name.rfind("controller.", 0) == 0;
  EXPECT_TRUE(planner && controller);

  LoadedRobot lr = load_robot(r.last_checkpoint);
  EXPECT_TRUE(config_diff(lr.config, cfg).empty());
  EXPECT_EQ(lr.stats, data.stats());
  EXPECT_EQ(lr.policy->obs_dim(), 4);
  EXPECT_EQ(lr.policy->action_dim(), 2);
  std::vector<float> a(ck.params.size());
  for (size_t i = 0; i < ck.params.size(); ++i) {
    const auto& arr = ck.params[i];
    int k = lr.policy->params().find(arr.name);
    ASSERT_GE(k, 0) << arr.name;
    EXPECT_EQ(0, std::memcmp(arr.data.data(), lr.policy->params().flat() + lr.policy->params().infos()[size_t(k)].offset,
                             sizeof(float) * arr.data.size()))
        << arr.name;
  }
}

TEST(RobotTrain, ResumeIsBitExact) {
  TempDir d;
  testing::write_reach_episodes(d / "eps.h5", 6, 30);
  TrainOptions o;
  o.quiet = true;
  Config full = parse_config(testing::robot_yaml(d / "eps.h5", d / "full", 12), "robot.yaml");
  TrainResult a = train(full, to_yaml(full), o);
  Config part = parse_config(testing::robot_yaml(d / "eps.h5", d / "part", 12), "robot.yaml");
  o.stop_after = 5;
  TrainResult b1 = train(part, to_yaml(part), o);
  EXPECT_EQ(b1.step, 5);
  o.stop_after = -1;
  o.resume = true;
  TrainResult b2 = train(part, to_yaml(part), o);
  EXPECT_EQ(b2.step, 12);
  Checkpoint ca = load_checkpoint(a.last_checkpoint), cb = load_checkpoint(b2.last_checkpoint);
  ASSERT_EQ(ca.params.size(), cb.params.size());
  for (size_t i = 0; i < ca.params.size(); ++i) EXPECT_EQ(ca.params[i].data, cb.params[i].data) << ca.params[i].name;
  EXPECT_EQ(ca.state, cb.state);

  // A different policy shape is refused on resume, naming the checkpoint.
  Config other = parse_config(testing::robot_yaml(d / "eps.h5", d / "part", 20), "robot.yaml", {"robot.latent=4"});
  try {
    train(other, to_yaml(other), o);
    ADD_FAILURE() << "resume with another latent width was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("different robot policy config"), std::string::npos) << e.what();
  }
}

TEST(RobotTrain, UnknownObsKeyIsRefused) {
  TempDir d;
  testing::write_reach_episodes(d / "eps.h5", 4, 20);
  Config cfg = parse_config(testing::robot_yaml(d / "eps.h5", d / "run", 5), "robot.yaml", {"robot.data.obs_keys=pos velocity"});
  try {
    RobotData data(cfg.robot, 1);
    ADD_FAILURE() << "accepted an unknown key";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("'velocity' is not an observation key"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("goal, pos"), std::string::npos) << e.what();
  }
  Config only_pos = parse_config(testing::robot_yaml(d / "eps.h5", d / "run", 5), "robot.yaml", {"robot.data.obs_keys=pos"});
  EXPECT_EQ(RobotData(only_pos.robot, 1).obs_dim(), 2);
}

}  // namespace
}  // namespace strata
