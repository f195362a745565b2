// Bad input through the CLI: each gets exit code 2 and a message naming the file, line, key and
// the allowed values; nothing on disk is overwritten.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "cli.h"
#include "core/device.h"

namespace fs = std::filesystem;
using namespace strata::testing;

namespace {

void expect_error(const RunResult& r, std::initializer_list<const char*> needles) {
  EXPECT_EQ(r.code, 2) << r.out;
  for (const char* n : needles) EXPECT_NE(r.out.find(n), std::string::npos) << "missing '" << n << "' in:\n" << r.out;
}

TEST(CliErrors, UnknownKeyNamesFileLineAndValidKeys) {
  std::string d = scratch_dir("err_key");
  std::string cfg = tiny_config();
  cfg.replace(cfg.find("  attention:"), 12, "  atention:");
  write_text(d + "/bad.yaml", cfg);
  expect_error(run("train bad.yaml", d), {"bad.yaml:5", "atention", "attention", "d_model"});
}

TEST(CliErrors, WrongType) {
  std::string d = scratch_dir("err_type");
  std::string cfg = tiny_config();
  cfg.replace(cfg.find("d_model: 32"), 11, "d_model: big");
  write_text(d + "/bad.yaml", cfg);
  expect_error(run("train bad.yaml", d), {"bad.yaml:2", "d_model", "integer", "big"});
}

TEST(CliErrors, HeadsNotDividingDModel) {
  std::string d = scratch_dir("err_heads");
  std::string cfg = tiny_config();
  cfg.replace(cfg.find("heads: 4, kv_heads: 2"), 21, "heads: 5, kv_heads: 1");
  write_text(d + "/bad.yaml", cfg);
  expect_error(run("train bad.yaml", d), {"bad.yaml", "heads", "5", "d_model", "32"});
}

TEST(CliErrors, TopKAboveExperts) {
  std::string d = scratch_dir("err_topk");
  write_text(d + "/a.yaml", tiny_config());
  expect_error(run("train a.yaml model.moe.top_k=9", d), {"top_k", "9", "experts", "4", "model.moe.top_k=9"});
}

TEST(CliErrors, BadPatternAndEnum) {
  std::string d = scratch_dir("err_enum");
  write_text(d + "/a.yaml", tiny_config());
  expect_error(run("train a.yaml model.pattern=M*X", d), {"pattern", "X", "M", "*", "-", "E"});
  expect_error(run("train a.yaml model.mamba.version=3", d), {"version", "3", "1", "2"});
  expect_error(run("train a.yaml model.nope=1", d), {"nope", "unknown"});
}

TEST(CliErrors, MissingFiles) {
  std::string d = scratch_dir("err_files");
  expect_error(run("train missing.yaml", d), {"missing.yaml", "not found"});
  write_text(d + "/a.yaml", tiny_config());
  expect_error(run("train a.yaml data.path=nowhere.txt", d), {"nowhere.txt", "not found"});
  expect_error(run("generate --ckpt nowhere.h5", d), {"nowhere.h5", "not found"});
}

// --device cuda where this binary or machine cannot run CUDA: refused before the checkpoint is read
// (so even a missing one is not what the message is about).
TEST(CliErrors, DeviceCudaWithoutAGpuIsRefusedFirst) {
  if (strata::cuda_available()) GTEST_SKIP() << "a CUDA device is usable here";
  std::string d = scratch_dir("err_device");
  expect_error(run("generate --ckpt nowhere.h5 --device cuda", d), {"--device: device cuda:"});
  expect_error(run("score --ckpt nowhere.h5 --ids-file ids.txt --out o.npy --device cuda", d), {"--device: device cuda:"});
  // An unknown device is CLI11's own validation (its exit code, not ours): the message names both.
  const RunResult tpu = run("generate --ckpt nowhere.h5 --device tpu", d);
  EXPECT_NE(tpu.code, 0);
  EXPECT_NE(tpu.out.find("--device: tpu not in {cpu,cuda}"), std::string::npos) << tpu.out;
}

TEST(CliErrors, CorruptCheckpointsAreRefused) {
  std::string d = scratch_dir("err_ckpt");
  write_text(d + "/a.yaml", tiny_config("", 5));
  ASSERT_EQ(run("train a.yaml train.run_dir=r --quiet", d).code, 0);
  std::string ck = d + "/r/ckpt-00000005.h5";
  ASSERT_TRUE(fs::exists(ck));
  // Truncated copy.
  fs::copy_file(ck, d + "/trunc.h5");
  fs::resize_file(d + "/trunc.h5", fs::file_size(ck) / 2);
  auto t = run("generate --ckpt trunc.h5 --max-tokens 5", d);
  EXPECT_EQ(t.code, 2) << t.out;
  EXPECT_NE(t.out.find("trunc.h5"), std::string::npos) << t.out;
  // Garbage file.
  write_text(d + "/garbage.h5", std::string(4096, 'x'));
  auto g = run("generate --ckpt garbage.h5 --max-tokens 5", d);
  EXPECT_EQ(g.code, 2) << g.out;
  EXPECT_NE(g.out.find("garbage.h5"), std::string::npos) << g.out;
}

TEST(CliErrors, CheckpointOfAnotherConfigIsRefusedAndKept) {
  std::string d = scratch_dir("err_other");
  write_text(d + "/a.yaml", tiny_config("", 5));
  ASSERT_EQ(run("train a.yaml train.run_dir=r --quiet", d).code, 0);
  std::string ck = d + "/r/ckpt-00000005.h5";
  auto size = fs::file_size(ck);
  auto time = fs::last_write_time(ck);
  auto r = run("train a.yaml train.run_dir=r train.steps=10 model.d_model=48 --resume --quiet", d);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("different"), std::string::npos) << r.out;
  EXPECT_EQ(fs::file_size(ck), size);
  EXPECT_EQ(fs::last_write_time(ck), time);
  int n = 0;
  for (auto& e : fs::directory_iterator(d + "/r")) n += e.path().extension() == ".h5";
  EXPECT_EQ(n, 1);
}

TEST(CliHelp, EverySubcommandHasHelp) {
  std::string d = scratch_dir("help");
  for (const char* sub : {"", "train ", "generate ", "score ", "inspect ", "import ", "import hf ", "export ", "export hf "}) {
    auto r = run(std::string(sub) + "--help", d);
    EXPECT_EQ(r.code, 0) << sub << r.out;
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << sub << r.out;
  }
  auto ins = run("inspect a.yaml", d);
  EXPECT_EQ(ins.code, 2);
}

}  // namespace
