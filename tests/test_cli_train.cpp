// End-to-end through the CLI: bit-exact resume, SIGTERM saves and resumes, metrics and TensorBoard
// files, deterministic generation, forward/decode scoring parity.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <thread>
#include <cstring>

#include "cli.h"
#include "testing.h"
#include "models/model.h"
#include "train/checkpoint.h"
#include "train/config_load.h"

namespace fs = std::filesystem;
using namespace strata;
using namespace strata::testing;

namespace {

std::string newest(const std::string& run_dir) {
  auto c = newest_good_checkpoint(run_dir, nullptr);
  EXPECT_TRUE(c.has_value()) << "no checkpoint in " << run_dir;
  return c.value_or("");
}

void expect_bitwise_equal(const std::vector<NamedArray>& a, const std::vector<NamedArray>& b, const char* what) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].name, b[i].name);
    ASSERT_EQ(a[i].data.size(), b[i].data.size());
    EXPECT_EQ(0, std::memcmp(a[i].data.data(), b[i].data.data(), a[i].data.size() * sizeof(float)))
        << what << " " << a[i].name << " differs";
  }
}

TEST(CliTrain, ResumeIsBitExact) {
  std::string d = scratch_dir("resume");
  write_text(d + "/a.yaml", tiny_config("", 20) + "");
  auto straight = run("train a.yaml train.run_dir=straight --quiet", d);
  ASSERT_EQ(straight.code, 0) << straight.out;
  auto first = run("train a.yaml train.run_dir=split --quiet --stop-after 10", d);
  ASSERT_EQ(first.code, 0) << first.out;
  auto second = run("train a.yaml train.run_dir=split --quiet --resume", d);
  ASSERT_EQ(second.code, 0) << second.out;
  Checkpoint a = load_checkpoint(newest(d + "/straight")), b = load_checkpoint(newest(d + "/split"));
  EXPECT_EQ(a.state.step, 20);
  EXPECT_EQ(b.state.step, 20);
  expect_bitwise_equal(a.params, b.params, "param");
  expect_bitwise_equal(a.adam_m, b.adam_m, "adam m");
  expect_bitwise_equal(a.adam_v, b.adam_v, "adam v");
  EXPECT_EQ(a.state.rng_counter, b.state.rng_counter);

  // Metrics and TensorBoard files exist and the loss went down.
  std::ifstream m(d + "/straight/metrics.jsonl");
  std::string line, first_line, last_loss_line;
  int lines = 0;
  while (std::getline(m, line)) {
    if (!lines++) first_line = line;
    if (line.find("\"loss\"") != std::string::npos) last_loss_line = line;
  }
  EXPECT_GE(lines, 4);
  bool has_events = false;
  for (auto& e : fs::directory_iterator(d + "/straight"))
    has_events |= e.path().filename().string().rfind("events.out.tfevents.", 0) == 0;
  EXPECT_TRUE(has_events);
}

TEST(CliTrain, FreshRunRefusesToOverwriteCheckpoints) {
  std::string d = scratch_dir("overwrite");
  write_text(d + "/a.yaml", tiny_config("", 5));
  ASSERT_EQ(run("train a.yaml train.run_dir=r --quiet", d).code, 0);
  auto before = fs::last_write_time(newest(d + "/r"));
  auto again = run("train a.yaml train.run_dir=r --quiet", d);
  EXPECT_EQ(again.code, 2) << again.out;
  EXPECT_NE(again.out.find("--resume"), std::string::npos) << again.out;
  EXPECT_EQ(fs::last_write_time(newest(d + "/r")), before);
}

TEST(CliTrain, SigtermSavesAndExitsZero) {
  std::string d = scratch_dir("sigterm");
  write_text(d + "/a.yaml", tiny_config("", 100000));
  std::string cmd = "cd '" + d + "' && exec '" + strata_bin() + "' train a.yaml train.run_dir=r train.save_every=0 --quiet";
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", cmd.c_str(), (char*)nullptr);
    _exit(127);
  }
  // Wait until training has run a little (metrics appear), then ask it to stop.
  for (int i = 0; i < 600 && !fs::exists(d + "/r/metrics.jsonl"); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  kill(pid, SIGTERM);
  int st = 0;
  waitpid(pid, &st, 0);
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 0);
  Checkpoint c = load_checkpoint(newest(d + "/r"));
  EXPECT_GT(c.state.step, 0);
  auto resumed = run("train a.yaml train.run_dir=r train.steps=" + std::to_string(c.state.step + 2) + " --quiet --resume", d);
  EXPECT_EQ(resumed.code, 0) << resumed.out;
}

TEST(CliGenerate, DeterministicForSeedAndScoreParity) {
  std::string d = scratch_dir("generate");
  write_text(d + "/a.yaml", tiny_config("", 10));
  ASSERT_EQ(run("train a.yaml train.run_dir=r --quiet", d).code, 0);
  auto g1 = run("generate --ckpt r --prompt 'the cat' --max-tokens 40 --seed 3", d);
  auto g2 = run("generate --ckpt r --prompt 'the cat' --max-tokens 40 --seed 3", d);
  ASSERT_EQ(g1.code, 0) << g1.out;
  EXPECT_EQ(g1.out, g2.out);
  EXPECT_EQ(g1.out.rfind("the cat", 0), 0u);
  EXPECT_GE(g1.out.size(), 40u + 7u);

  write_text(d + "/t.txt", "the dog ran to its home and the cat sat on a mat");
  ASSERT_EQ(run("score --ckpt r --text-file t.txt --mode forward --out f.npy", d).code, 0);
  ASSERT_EQ(run("score --ckpt r --text-file t.txt --mode decode --out s.npy", d).code, 0);
  auto load = [](const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    std::string all((std::istreambuf_iterator<char>(f)), {});
    EXPECT_EQ(all.rfind("\x93NUMPY", 0), 0u);
    uint16_t hl;
    std::memcpy(&hl, all.data() + 8, 2);
    std::vector<float> v((all.size() - 10 - hl) / 4);
    std::memcpy(v.data(), all.data() + 10 + hl, v.size() * 4);
    return v;
  };
  auto f = load(d + "/f.npy"), s = load(d + "/s.npy");
  ASSERT_EQ(f.size(), 48u * 256u);
  strata::testing::Diff df = strata::testing::diff(s, f);
  std::printf("  score decode vs forward: max_abs=%.3e\n", df.max_abs);
  EXPECT_LE(df.max_abs, 1e-4);
}

// `strata init` writes exactly the model `train` would start from (the config's seed), weights only,
// and the other commands read it.
TEST(CliInit, WritesTheSeededModelWithoutTraining) {
  std::string d = scratch_dir("init");
  write_text(d + "/a.yaml", tiny_config("", 10));
  auto i1 = run("init a.yaml -o i1.h5", d);
  ASSERT_EQ(i1.code, 0) << i1.out;
  EXPECT_NE(i1.out.find("wrote i1.h5"), std::string::npos) << i1.out;
  ASSERT_EQ(run("init a.yaml -o i2.h5 --quiet", d).code, 0);
  ASSERT_EQ(run("init a.yaml train.seed=8 -o i3.h5 --quiet", d).code, 0);

  const Checkpoint c1 = load_checkpoint(d + "/i1.h5"), c2 = load_checkpoint(d + "/i2.h5"),
                   c3 = load_checkpoint(d + "/i3.h5");
  EXPECT_EQ(c1.state.step, 0);
  EXPECT_TRUE(c1.adam_m.empty() && c1.adam_v.empty()) << "weights only";
  expect_bitwise_equal(c1.params, c2.params, "init twice");
  const Config cfg = load_config(d + "/a.yaml");
  Model m(cfg.model, cfg.train.seed);
  const ParamStore& ps = m.params();
  ASSERT_EQ(c1.params.size(), ps.infos().size());
  for (size_t i = 0; i < c1.params.size(); ++i) {
    const ParamInfo& p = ps.infos()[i];
    ASSERT_EQ(c1.params[i].name, p.name);
    ASSERT_EQ(int64_t(c1.params[i].data.size()), p.numel);
    EXPECT_EQ(0, std::memcmp(c1.params[i].data.data(), ps.flat() + p.offset, size_t(p.numel) * 4)) << p.name;
  }
  bool any_differs = false;
  for (size_t i = 0; i < c1.params.size(); ++i) any_differs |= c1.params[i].data != c3.params[i].data;
  EXPECT_TRUE(any_differs) << "train.seed=8 gave the seed-7 weights";

  auto gen = run("generate --ckpt i1.h5 --prompt 'the cat' --max-tokens 8 --temperature 0", d);
  EXPECT_EQ(gen.code, 0) << gen.out;
  auto ins = run("inspect i1.h5", d);
  EXPECT_NE(ins.out.find("(step 0)"), std::string::npos) << ins.out;
  auto bad = run("init a.yaml model.d_modle=64 -o x.h5", d);
  EXPECT_EQ(bad.code, 2) << bad.out;
  EXPECT_NE(bad.out.find("unknown key 'model.d_modle'"), std::string::npos) << bad.out;
  EXPECT_FALSE(fs::exists(d + "/x.h5"));
}

// Stopped before the first evaluation: the summary says so instead of printing a val loss of -1.
TEST(CliTrain, SummaryWithoutAnEvalSaysNoValLoss) {
  std::string d = scratch_dir("noeval");
  write_text(d + "/a.yaml", tiny_config("", 10));
  auto r = run("train a.yaml train.run_dir=r train.eval_every=100 --stop-after 2 --quiet", d);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("at step 2: train loss"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("no val loss yet"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("-1.0000"), std::string::npos) << r.out;
}

}  // namespace
