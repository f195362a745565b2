// Stopping `strata train` with a signal while the GEMMs run: oneDNN's JIT GEMM kernels (Debian's
// 2.x) point rsp into the heap, so a signal delivered to a thread inside one wrote its frame into
// the heap, and a stopped run aborted with "corrupted size vs. prev_size" in about half the tries
// (oneDNN issue #4845). train/train_common.h's SignalGuard keeps the signals off the computing
// threads. Each try signals a run of a GEMM-heavy model at a different moment; with the bug, three
// tries all passing had a probability of about 1 in 8.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "cli.h"
#include "testing.h"

namespace fs = std::filesystem;
using namespace strata::testing;

TEST(Interrupt, SignalsDuringTheGemmsStopTheRunCleanly) {
  const std::string d = scratch_dir("interrupt");
  // Only MLPs (three GEMMs each, forward and backward) at a width where the GEMMs take most of a step.
  write_text(d + "/m.yaml",
             "model: {d_model: 128, pattern: \"-\", repeat: 2}\n"
             "train: {steps: 1000000, batch: 8, seq: 128, seed: 1, eval_every: 0, save_every: 0, log_every: 10}\n"
             "data: {kind: text, path: data.txt, val_fraction: 0.1}\n");
  const int sigs[] = {SIGINT, SIGTERM, SIGINT};
  for (int k = 0; k < 3; ++k) {
    const std::string run = "r" + std::to_string(k);
    pid_t pid = fork();
    if (pid == 0) {
      if (chdir(d.c_str()) != 0) _exit(126);
      setenv("OMP_NUM_THREADS", "1", 1);
      std::string out = run + ".log";
      freopen(out.c_str(), "w", stderr);
      execl(strata_bin().c_str(), "strata", "train", "m.yaml", ("train.run_dir=" + run).c_str(), "--quiet", (char*)nullptr);
      _exit(127);
    }
    ASSERT_GT(pid, 0);
    // Once training is under way (metrics written), at a different moment of a step each time.
    for (int i = 0; i < 600 && !fs::exists(d + "/" + run + "/metrics.jsonl"); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::this_thread::sleep_for(std::chrono::milliseconds(700 + 370 * k));
    kill(pid, sigs[k]);
    int st = 0;
    waitpid(pid, &st, 0);
    std::string log = read_bytes(d + "/" + run + ".log");
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0)
        << "try " << k << ": " << (WIFSIGNALED(st) ? "killed by signal " + std::to_string(WTERMSIG(st)) : "exit code " + std::to_string(WEXITSTATUS(st)))
        << "\n" << log;
    EXPECT_NE(log.find("interrupted at step"), std::string::npos) << log;
  }
}
