// train.precision through the CLI: a bf16 run's loss curve tracks the fp32 run's on the tiny hybrid
// config (mamba2, attention, MoE, MLP), bf16 resume is bit-exact (the shadow is rebuilt from the
// checkpoint's fp32 weights), and a bad value names the allowed ones.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>

#include "cli.h"
#include "testing.h"
#include "train/checkpoint.h"

using namespace strata;
using namespace strata::testing;

namespace {

// The "loss" of every metrics row, in step order.
std::vector<double> losses(const std::string& metrics_path) {
  std::ifstream f(metrics_path);
  std::vector<double> out;
  std::string line;
  const std::string key = "\"loss\":";
  while (std::getline(f, line)) {
    auto at = line.find(key);
    if (at != std::string::npos) out.push_back(std::stod(line.substr(at + key.size())));
  }
  return out;
}

Checkpoint newest(const std::string& run_dir) {
  auto c = newest_good_checkpoint(run_dir, nullptr);
  EXPECT_TRUE(c.has_value()) << "no checkpoint in " << run_dir;
  return load_checkpoint(c.value_or(""));
}

bool bitwise_equal(const std::vector<NamedArray>& a, const std::vector<NamedArray>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].name != b[i].name || a[i].data.size() != b[i].data.size() ||
        std::memcmp(a[i].data.data(), b[i].data.data(), a[i].data.size() * sizeof(float)) != 0)
      return false;
  return true;
}

}  // namespace

TEST(TrainBf16, LossTracksFp32AndDecreases) {
  std::string d = scratch_dir("bf16_curve");
  write_text(d + "/a.yaml", tiny_config("", 30));
  auto f32 = run("train a.yaml train.run_dir=f32 --quiet", d);
  ASSERT_EQ(f32.code, 0) << f32.out;
  auto b16 = run("train a.yaml train.run_dir=b16 train.precision=bf16 --quiet", d);
  ASSERT_EQ(b16.code, 0) << b16.out;
  auto l32 = losses(d + "/f32/metrics.jsonl"), l16 = losses(d + "/b16/metrics.jsonl");
  ASSERT_EQ(l32.size(), 6u);  // log_every: 5
  ASSERT_EQ(l16.size(), l32.size());
  for (size_t i = 0; i < l32.size(); ++i) std::printf("  step %2zu  fp32 %.4f  bf16 %.4f\n", 5 * (i + 1), l32[i], l16[i]);
  // Learning happened in both, and bf16 stays within a few percent of fp32 at every logged step.
  EXPECT_LT(l16.back(), 0.8 * l16.front());
  EXPECT_LT(l32.back(), 0.8 * l32.front());
  for (size_t i = 0; i < l32.size(); ++i) EXPECT_NEAR(l16[i], l32[i], 0.03 * l32[i]) << "logged row " << i;
  // ... and it is a different computation, not fp32 under another name.
  EXPECT_FALSE(bitwise_equal(newest(d + "/f32").params, newest(d + "/b16").params));
}

TEST(TrainBf16, ResumeIsBitExact) {
  std::string d = scratch_dir("bf16_resume");
  write_text(d + "/a.yaml", tiny_config("", 16));
  auto straight = run("train a.yaml train.run_dir=straight train.precision=bf16 --quiet", d);
  ASSERT_EQ(straight.code, 0) << straight.out;
  auto first = run("train a.yaml train.run_dir=split train.precision=bf16 --quiet --stop-after 8", d);
  ASSERT_EQ(first.code, 0) << first.out;
  auto second = run("train a.yaml train.run_dir=split train.precision=bf16 --quiet --resume", d);
  ASSERT_EQ(second.code, 0) << second.out;
  Checkpoint a = newest(d + "/straight"), b = newest(d + "/split");
  EXPECT_EQ(a.state.step, 16);
  EXPECT_EQ(b.state.step, 16);
  EXPECT_TRUE(bitwise_equal(a.params, b.params));
  EXPECT_TRUE(bitwise_equal(a.adam_m, b.adam_m));
  EXPECT_TRUE(bitwise_equal(a.adam_v, b.adam_v));
}

TEST(TrainBf16, UnknownPrecisionListsAllowedValues) {
  std::string d = scratch_dir("bf16_bad");
  write_text(d + "/a.yaml", tiny_config("", 2));
  auto r = run("train a.yaml train.precision=fp16 --quiet", d);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("'train.precision' must be one of: fp32, bf16"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("fp16"), std::string::npos) << r.out;
}
