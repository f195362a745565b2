// End to end through the CLI on a synthetic task: a tiny attention model learns selective copying
// above chance in a few hundred steps, the accuracy at train.seq and at data.eval_seqs lands in
// metrics.jsonl and TensorBoard, and a resumed run continues the data stream bit for bit.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "cli.h"
#include "testing.h"
#include "train/checkpoint.h"

namespace fs = std::filesystem;
using namespace strata;
using namespace strata::testing;

namespace {

// Selective copying of 4 tokens among 6 data symbols (chance: 1/6) in sequences of 32.
std::string copying_config(int steps) {
  return "model:\n"
         "  d_model: 64\n"
         "  pattern: \"*-\"\n"
         "  repeat: 2\n"
         "  attention: {heads: 4}\n"
         "  mlp: {hidden: 128}\n"
         "train: {steps: " + std::to_string(steps) + ", batch: 32, seq: 32, seed: 1, eval_every: 100, eval_batches: 4, "
         "save_every: 0, log_every: 50}\n"
         "optim: {lr: 3.0e-3, warmup: 20, weight_decay: 0.0}\n"
         "data:\n"
         "  kind: selective_copying\n"
         "  eval_seqs: \"64\"\n"
         "  selective_copying: {vocab: 8, tokens: 4}\n";
}

std::vector<nlohmann::json> eval_rows(const std::string& metrics) {
  std::vector<nlohmann::json> rows;
  std::ifstream f(metrics);
  for (std::string line; std::getline(f, line);) {
    auto j = nlohmann::json::parse(line);
    if (j.contains("val_acc")) rows.push_back(j);
  }
  return rows;
}

}  // namespace

TEST(CliSynthetic, SelectiveCopyingAccuracyIsWrittenAndRisesAboveChance) {
  std::string d = scratch_dir("synthetic");
  write_text(d + "/sc.yaml", copying_config(300));
  auto r = run("train sc.yaml train.run_dir=run --quiet", d);
  ASSERT_EQ(r.code, 0) << r.out;
  auto rows = eval_rows(d + "/run/metrics.jsonl");
  ASSERT_EQ(rows.size(), 3u) << "an evaluation at steps 100, 200 and 300";
  for (auto& j : rows) {
    std::printf("  %s\n", j.dump().c_str());
    for (const char* k : {"val_loss", "val_acc", "val_seq_acc", "val_loss@64", "val_acc@64", "val_seq_acc@64"})
      EXPECT_TRUE(j.contains(k)) << k;
  }
  const double last = rows.back()["val_acc"].get<double>();
  EXPECT_GT(last, 1.0 / 6.0 + 0.15) << "above chance (1/6) on the easy setting";
  EXPECT_GE(last, rows.front()["val_acc"].get<double>() - 0.05);
  // TensorBoard scalars carry the same names.
  std::string events;
  for (auto& e : fs::directory_iterator(d + "/run"))
    if (e.path().filename().string().rfind("events.out.tfevents.", 0) == 0) events += read_bytes(e.path().string());
  for (const char* tag : {"val/acc", "val/acc@64", "val/seq_acc", "val/loss@64"})
    EXPECT_NE(events.find(tag), std::string::npos) << tag;
  // The config written to the run directory parses back with the task's keys and derived vocabulary.
  std::string cfg = read_bytes(d + "/run/config.yaml");
  EXPECT_NE(cfg.find("selective_copying:"), std::string::npos);
  EXPECT_NE(cfg.find("vocab_size: 8"), std::string::npos);
  fs::remove_all(d);
}

TEST(CliSynthetic, ResumeContinuesTheGeneratedStream) {
  std::string d = scratch_dir("synthetic_resume");
  write_text(d + "/sc.yaml", copying_config(20));
  ASSERT_EQ(run("train sc.yaml train.run_dir=straight --quiet", d).code, 0);
  auto first = run("train sc.yaml train.run_dir=split --quiet --stop-after 10", d);
  ASSERT_EQ(first.code, 0) << first.out;
  auto second = run("train sc.yaml train.run_dir=split --quiet --resume", d);
  ASSERT_EQ(second.code, 0) << second.out;
  Checkpoint a = load_checkpoint(newest_good_checkpoint(d + "/straight", nullptr).value_or(""));
  Checkpoint b = load_checkpoint(newest_good_checkpoint(d + "/split", nullptr).value_or(""));
  EXPECT_EQ(a.state.step, 20);
  EXPECT_EQ(a.state.rng_counter, b.state.rng_counter);
  ASSERT_EQ(a.params.size(), b.params.size());
  for (size_t i = 0; i < a.params.size(); ++i)
    EXPECT_EQ(0, std::memcmp(a.params[i].data.data(), b.params[i].data.data(), a.params[i].data.size() * sizeof(float)))
        << a.params[i].name;
  fs::remove_all(d);
}
