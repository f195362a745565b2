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

// A validation split too short for one sequence is refused before the first step, so a run with
// train.eval_every=0 (evaluation only at the end) does not train to the end and then lose it all.
TEST(CliErrors, ValidationSplitShorterThanASequenceIsRefusedBeforeTraining) {
  std::string d = scratch_dir("err_valsplit");
  write_text(d + "/a.yaml", tiny_config("", 5));
  write_text(d + "/small.txt", std::string(400, 'a'));  // 10% = 40 bytes < seq + 1 = 101
  auto r = run("train a.yaml train.run_dir=r train.eval_every=0 train.seq=100 data.path=small.txt --quiet", d);
  expect_error(r, {"small.txt", "data.path", "validation", "40 bytes", "train.seq", "101", "data.val_fraction"});
  EXPECT_FALSE(fs::exists(d + "/r/metrics.jsonl")) << "training started before the check";
  auto t = run("train a.yaml train.run_dir=r2 train.seq=100 data.path=small.txt data.val_fraction=0.9 --quiet", d);
  expect_error(t, {"small.txt", "data.path", "training split", "train.seq", "101"});
}

// generate / score / export with a run directory whose newest checkpoint is damaged: they use the
// newest good one, and say which file they skipped and why, as train --resume does.
TEST(CliErrors, SkippedCorruptCheckpointIsReported) {
  std::string d = scratch_dir("err_skip");
  write_text(d + "/a.yaml", tiny_config("", 10));
  ASSERT_EQ(run("train a.yaml train.run_dir=r --quiet", d).code, 0);
  std::string newest = d + "/r/ckpt-00000010.h5";
  ASSERT_TRUE(fs::exists(newest));
  fs::resize_file(newest, fs::file_size(newest) / 2);
  auto g = run("generate --ckpt r --max-tokens 3", d);
  EXPECT_EQ(g.code, 0) << g.out;
  for (const char* n : {"warning", "ckpt-00000010.h5", "truncated", "ckpt-00000005.h5"})
    EXPECT_NE(g.out.find(n), std::string::npos) << "missing '" << n << "' in:\n" << g.out;
  write_text(d + "/t.txt", "the cat");
  auto s = run("score --ckpt r --text-file t.txt --out o.npy", d);
  EXPECT_EQ(s.code, 0) << s.out;
  EXPECT_NE(s.out.find("warning"), std::string::npos) << s.out;
  EXPECT_NE(s.out.find("ckpt-00000010.h5"), std::string::npos) << s.out;
}

// inspect takes a .h5 path as a checkpoint: an empty or non-HDF5 file is refused, not read as an
// (empty) YAML config that prints the default model.
TEST(CliErrors, InspectRefusesAnEmptyOrNonHdf5Checkpoint) {
  std::string d = scratch_dir("err_inspect");
  write_text(d + "/e.h5", "");
  expect_error(run("inspect e.h5", d), {"e.h5", "not an HDF5 file"});
  write_text(d + "/y.h5", "model: {d_model: 64}\n");
  expect_error(run("inspect y.h5", d), {"y.h5", "not an HDF5 file"});
  write_text(d + "/b.yaml", std::string("\x89HDF\0\0\0\0garbage", 15));
  auto b = run("inspect b.yaml", d);
  EXPECT_EQ(b.code, 2) << b.out;
  EXPECT_EQ(b.out.find("parameters:"), std::string::npos) << b.out;
}

// CLI ranges read as words, not "0.000000 to 1797693..."; NaN is not a temperature or a top-p.
TEST(CliErrors, CommandLineRangesAreReadableAndRefuseNan) {
  std::string d = scratch_dir("err_ranges");
  auto expect_cli = [&](const std::string& args, std::initializer_list<const char*> needles) {
    auto r = run(args, d);
    EXPECT_NE(r.code, 0) << args << "\n" << r.out;
    EXPECT_EQ(r.out.find("179769"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("not found"), std::string::npos) << "the value was accepted: " << r.out;
    for (const char* n : needles) EXPECT_NE(r.out.find(n), std::string::npos) << "missing '" << n << "' in:\n" << r.out;
  };
  expect_cli("generate --ckpt x.h5 --max-tokens 0", {"--max-tokens", ">= 1", "0"});
  expect_cli("generate --ckpt x.h5 --temperature nan", {"--temperature", "finite"});
  expect_cli("generate --ckpt x.h5 --temperature -1", {"--temperature", ">= 0"});
  expect_cli("generate --ckpt x.h5 --top-p nan", {"--top-p", "finite"});
  expect_cli("generate --ckpt x.h5 --top-p 1.5", {"--top-p", "[0, 1]"});
  expect_cli("generate --ckpt x.h5 --top-k -2", {"--top-k", ">= 0"});
  expect_cli("export hf x.h5 -o out --max-shard-gb inf", {"--max-shard-gb", "finite"});
}

// A directory where a file is expected says so.
TEST(CliErrors, DirectoryInsteadOfAFileSaysSo) {
  std::string d = scratch_dir("err_dir");
  write_text(d + "/a.yaml", tiny_config("", 5));
  fs::create_directories(d + "/adir");
  expect_error(run("train a.yaml train.run_dir=r data.path=adir --quiet", d), {"adir", "is a directory", "data.path"});
  ASSERT_EQ(run("train a.yaml train.run_dir=r --quiet", d).code, 0);
  expect_error(run("score --ckpt r --text-file adir --out o.npy", d), {"adir", "is a directory", "--text-file"});
  expect_error(run("score --ckpt r --ids-file adir --out o.npy", d), {"adir", "is a directory", "--ids-file"});
}

TEST(CliHelp, EverySubcommandHasHelp) {
  std::string d = scratch_dir("help");
  for (const char* sub : {"", "train ", "generate ", "score ", "inspect ", "import ", "import hf ", "export ", "export hf ", "quantize ", "eval-ppl "}) {
    auto r = run(std::string(sub) + "--help", d);
    EXPECT_EQ(r.code, 0) << sub << r.out;
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << sub << r.out;
  }
  auto ins = run("inspect a.yaml", d);
  EXPECT_EQ(ins.code, 2);
}

}  // namespace
