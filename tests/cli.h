#pragma once
// Runs the strata CLI (path from $STRATA_BIN, set by CTest) in a scratch directory and captures
// its exit code and combined output.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/rng.h"

namespace strata::testing {

struct RunResult {
  int code = -1;
  std::string out;
};

inline std::string strata_bin() {
  const char* b = std::getenv("STRATA_BIN");
  return b ? b : "build/strata";
}

// Runs a shell command line in cwd (stdout and stderr together). A command killed by a signal
// gives code -1.
inline RunResult run_raw(const std::string& command, const std::string& cwd) {
  std::string cmd = "cd '" + cwd + "' && " + command + " 2>&1";
  RunResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  int st = pclose(p);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

inline RunResult run(const std::string& args, const std::string& cwd) { return run_raw("'" + strata_bin() + "' " + args, cwd); }

// A fresh scratch directory with a synthetic text corpus (data.txt): words from a small vocabulary
// in a Markov-ish order, so a tiny model can learn something in a few steps.
inline std::string scratch_dir(const std::string& name) {
  namespace fs = std::filesystem;
  fs::path d = fs::temp_directory_path() / ("strata_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  const char* words[] = {"the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "its", "home", "\n"};
  Rng r(123);
  std::ofstream f(d / "data.txt");
  for (int i = 0; i < 20000; ++i) f << words[r.below(13)] << ' ';
  return d.string();
}

inline void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

// A tiny hybrid config for CLI tests.
inline std::string tiny_config(const std::string& extra_model = "", int steps = 20) {
  return "model:\n"
         "  d_model: 32\n"
         "  pattern: \"M*E-\"\n" +
         extra_model +
         "  mamba: {version: 2, d_state: 8, head_dim: 16, chunk: 8}\n"
         "  attention: {heads: 4, kv_heads: 2}\n"
         "  mlp: {hidden: 48}\n"
         "  moe: {experts: 4, top_k: 2, hidden: 24}\n"
         "train: {steps: " + std::to_string(steps) + ", batch: 3, seq: 24, seed: 7, eval_every: 10, eval_batches: 2, save_every: 5, keep_checkpoints: 3, log_every: 5}\n"
         "optim: {lr: 3.0e-3, warmup: 4}\n"
         "data: {kind: text, path: data.txt, val_fraction: 0.1}\n";
}

}  // namespace strata::testing
