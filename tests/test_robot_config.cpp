// The config's robot section (train/config_load.h): keys, defaults, round trip, and errors that
// name the key, the file and the line and list what would be accepted.
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "train/config_load.h"

namespace strata {
namespace {

const char* kRobot = R"(model:
  pattern: "M"
robot:
  planner:
    pattern: "M-"
    d_model: 32
  controller:
    pattern: "-"
    d_model: 16
  planner_hz: 10
  control_hz: 50
  handoff: rtc
  chunk: 8
  latent: 12
  planner_delay_ticks: 2
  loss: mse
  data:
    path: episodes.hdf5
    obs_keys: "obs_a obs_b"
)";

std::string error_of(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  try {
    parse_config(yaml, "r.yaml", overrides);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

TEST(RobotConfig, ParsesAndRoundTrips) {
  Config c = parse_config(kRobot, "r.yaml");
  ASSERT_TRUE(c.robot.enabled());
  EXPECT_EQ(c.robot.planner.pattern, "M-");
  EXPECT_EQ(c.robot.planner.d_model, 32);
  EXPECT_EQ(c.robot.controller.d_model, 16);
  EXPECT_EQ(c.robot.ratio(), 5);
  EXPECT_EQ(c.robot.handoff, "rtc");
  EXPECT_EQ(c.robot.chunk, 8);
  EXPECT_EQ(c.robot.latent, 12);
  EXPECT_EQ(c.robot.planner_delay_ticks, 2);
  EXPECT_EQ(c.robot.loss, "mse");
  EXPECT_EQ(c.robot.data.obs_keys, "obs_a obs_b");
  Config back = parse_config(to_yaml(c), "back.yaml");
  EXPECT_TRUE(config_diff(c, back).empty());
}

TEST(RobotConfig, LanguageConfigHasNoRobot) {
  Config c = parse_config("model: {d_model: 64}\n", "l.yaml");
  EXPECT_FALSE(c.robot.enabled());
  // Its dump has no robot section (readers of language configs see what they always saw).
  EXPECT_EQ(to_yaml(c).find("robot"), std::string::npos);
  EXPECT_NE(to_yaml(parse_config(kRobot, "r.yaml")).find("robot:"), std::string::npos);
}

TEST(RobotConfig, UnknownKeyUnderRobotNamesKeyFileLine) {
  std::string y = kRobot;
  y.replace(y.find("    d_model: 16"), 15, "    d_modle: 16");
  std::string e = error_of(y);
  EXPECT_NE(e.find("r.yaml:9"), std::string::npos) << e;
  EXPECT_NE(e.find("robot.controller.d_modle"), std::string::npos) << e;
  EXPECT_NE(e.find("valid keys in 'robot.controller': d_model, pattern, repeat"), std::string::npos) << e;
}

TEST(RobotConfig, UnknownTopLevelRobotKeyListsValidKeys) {
  std::string e = error_of(std::string(kRobot) + "  planer_hz: 5\n");
  EXPECT_NE(e.find("r.yaml:20"), std::string::npos) << e;
  EXPECT_NE(e.find("planer_hz"), std::string::npos) << e;
  EXPECT_NE(e.find("planner_hz"), std::string::npos) << e;
}

TEST(RobotConfig, BadHandoffListsChoices) {
  std::string y = kRobot;
  y.replace(y.find("handoff: rtc"), 12, "handoff: rtk");
  std::string e = error_of(y);
  EXPECT_NE(e.find("r.yaml:12"), std::string::npos) << e;
  EXPECT_NE(e.find("hold, ensemble, rtc"), std::string::npos) << e;
}

TEST(RobotConfig, BadLossListsChoices) {
  std::string e = error_of(kRobot, {"robot.loss=huber"});
  EXPECT_NE(e.find("robot.loss"), std::string::npos) << e;
  EXPECT_NE(e.find("l1, mse"), std::string::npos) << e;
}

TEST(RobotConfig, RatesMustDivide) {
  std::string y = kRobot;
  y.replace(y.find("control_hz: 50"), 14, "control_hz: 55");
  std::string e = error_of(y);
  EXPECT_NE(e.find("r.yaml:11"), std::string::npos) << e;
  EXPECT_NE(e.find("not a multiple"), std::string::npos) << e;
}

TEST(RobotConfig, PatternAndShapeErrors) {
  EXPECT_NE(error_of(kRobot, {"robot.planner.pattern=MX"}).find("allowed characters"), std::string::npos);
  EXPECT_NE(error_of(kRobot, {"robot.chunk=0", "robot.latent=0"}).find("output nothing"), std::string::npos);
  EXPECT_NE(error_of(kRobot, {"robot.data.path="}).find("robot.data.path"), std::string::npos);
  EXPECT_NE(error_of(kRobot, {"robot.planner.pattern=*", "model.attention.heads=5"}).find("does not divide"), std::string::npos);
}

}  // namespace
}  // namespace strata
