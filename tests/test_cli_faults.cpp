// Faults around a training run, through the CLI: a full disk while saving, two trainers on one run
// directory, and a run whose loss turns non-finite. Each ends with a clear message, a non-zero exit
// where the run cannot go on, no crash, and the last good checkpoint kept.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "cli.h"
#include "train/checkpoint.h"

namespace fs = std::filesystem;
using namespace strata;
using namespace strata::testing;

namespace {

void expect_has(const std::string& out, std::initializer_list<const char*> needles) {
  for (const char* n : needles) EXPECT_NE(out.find(n), std::string::npos) << "missing '" << n << "' in:\n" << out;
}

// The CLI under a file-size limit (bash's ulimit -f, in KiB) with SIGXFSZ ignored, so a write past
// it fails with EFBIG exactly as a full disk fails with ENOSPC. exec: the status is strata's own, so
// a crash shows as a signal (code -1), not as the shell's 139.
RunResult run_with_file_limit(const std::string& args, const std::string& cwd, int kib) {
  return run_raw("exec bash -c \"ulimit -f " + std::to_string(kib) + "; trap '' XFSZ; exec '" + strata_bin() + "' " + args + "\"", cwd);
}

// Starts `strata args` in cwd in the background; returns its pid.
pid_t spawn(const std::string& args, const std::string& cwd) {
  std::string cmd = "cd '" + cwd + "' && exec '" + strata_bin() + "' " + args + " > /dev/null 2>&1";
  pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", cmd.c_str(), (char*)nullptr);
    _exit(127);
  }
  return pid;
}

}  // namespace

TEST(CliFaults, DiskFullWhileSavingExitsWithTheErrorAndNoCrash) {
  std::string d = scratch_dir("fault_full");
  write_text(d + "/a.yaml", tiny_config("", 5));
  // The tiny model's checkpoint is ~430 KB; 200 KiB lets config.yaml and the metrics through.
  auto r = run_with_file_limit("train a.yaml train.run_dir=r --quiet", d, 200);
  std::printf("  exit %d:\n%s", r.code, r.out.c_str());
  EXPECT_EQ(r.code, 1) << "a crash at exit shows as -1 (killed by a signal)";
  expect_has(r.out, {"error: saving checkpoint", "ckpt-00000005.h5", "File too large"});
  EXPECT_EQ(r.out.find("HDF5-DIAG"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("infinite loop"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("time ="), std::string::npos) << "HDF5's raw write diagnostics leaked: " << r.out;
  EXPECT_FALSE(fs::exists(d + "/r/ckpt-00000005.h5.tmp"));
}

// Reading badly damaged checkpoints through the CLI: the error, then a clean exit (no "infinite loop
// closing library" and no HDF5 lines after it).
TEST(CliFaults, DamagedCheckpointsGiveOneErrorLine) {
  std::string d = scratch_dir("fault_damaged");
  write_text(d + "/a.yaml", tiny_config("", 5));
  ASSERT_EQ(run("train a.yaml train.run_dir=r --quiet", d).code, 0);
  std::string good;
  {
    std::ifstream f(d + "/r/ckpt-00000005.h5", std::ios::binary);
    good.assign(std::istreambuf_iterator<char>(f), {});
  }
  Rng rng(3);
  for (int i = 0; i < 12; ++i) {
    std::string bad = good;
    size_t at = size_t(rng.below(good.size() / 4)), n = 4096;  // the metadata is near the start
    for (size_t k = at; k < std::min(good.size(), at + n); ++k) bad[k] = char(rng.below(256));
    std::ofstream(d + "/bad.h5", std::ios::binary | std::ios::trunc).write(bad.data(), std::streamsize(bad.size()));
    auto r = run("generate --ckpt bad.h5 --max-tokens 2", d);
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_EQ(r.out.rfind("error: checkpoint 'bad.h5'", 0), 0u) << r.out;
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << "more than the error line:\n" << r.out;
  }
}

// A second trainer on a run directory that a trainer holds is refused up front, naming the directory
// and the holder's pid; the first one is unaffected.
TEST(CliFaults, SecondTrainerOnTheSameRunDirectoryIsRefused) {
  std::string d = scratch_dir("fault_lock");
  write_text(d + "/a.yaml", tiny_config("", 100000));
  pid_t first = spawn("train a.yaml train.run_dir=r train.save_every=0 --quiet", d);
  ASSERT_GT(first, 0);
  for (int i = 0; i < 600 && !fs::exists(d + "/r/metrics.jsonl"); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(fs::exists(d + "/r/metrics.jsonl"));
  auto second = run("train a.yaml train.run_dir=r train.steps=3 --quiet", d);
  auto resumed = run("train a.yaml train.run_dir=r train.steps=3 --quiet --resume", d);
  kill(first, SIGTERM);
  int st = 0;
  waitpid(first, &st, 0);
  EXPECT_EQ(second.code, 2) << second.out;
  expect_has(second.out, {"'r'", "another trainer", std::to_string(first).c_str()});
  EXPECT_EQ(resumed.code, 2) << resumed.out;
  expect_has(resumed.out, {"'r'", "another trainer"});
  ASSERT_TRUE(WIFEXITED(st)) << "the first trainer did not exit normally";
  EXPECT_EQ(WEXITSTATUS(st), 0);
  // The first trainer saved on SIGTERM; with it gone the directory is free again.
  auto again = run("train a.yaml train.run_dir=r train.steps=1000000 --stop-after 1 --quiet --resume", d);
  EXPECT_EQ(again.code, 0) << again.out;
}

// A learning rate far too large drives the loss to inf/NaN: those steps are skipped (logged, no
// update), and after train.max_nonfinite_steps in a row the run stops with a non-zero exit, keeping
// the last good checkpoint (which holds only finite values).
TEST(CliFaults, NonFiniteStepsAreSkippedThenStopTheRun) {
  std::string d = scratch_dir("fault_nan");
  write_text(d + "/a.yaml", tiny_config("", 50));
  // The tiny config's pattern has an MoE layer: NaN router logits still route to valid experts, so
  // the non-finite loss reaches the guard.
  auto r = run("train a.yaml train.run_dir=r optim.lr=1e30 optim.warmup=0 optim.clip=0 train.save_every=1 "
               "train.max_nonfinite_steps=3",
               d);
  std::printf("  exit %d; last lines:\n%s\n", r.code, r.out.substr(r.out.size() > 1200 ? r.out.size() - 1200 : 0).c_str());
  EXPECT_EQ(r.code, 1) << r.out;
  expect_has(r.out, {"non-finite", "skipped", "3 steps in a row", "train.max_nonfinite_steps", "last good checkpoint"});
  auto good = newest_good_checkpoint(d + "/r", nullptr);
  ASSERT_TRUE(good.has_value());
  Checkpoint ck = load_checkpoint(*good);  // refuses non-finite values
  EXPECT_GE(ck.state.step, 1);
  EXPECT_LT(ck.state.step, 50);
  EXPECT_NE(r.out.find(fs::path(*good).filename().string()), std::string::npos) << r.out;
}
