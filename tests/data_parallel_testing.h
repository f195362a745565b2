#pragma once
// What the data-parallel CLI tests share, under mpirun (test_cli_data_parallel.cpp) and under
// Slurm's srun (slow/test_srun_slurm.cpp): the small config both train, and how two runs' tensors
// are compared.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "train/checkpoint.h"

namespace strata::testing {

// A small hybrid (Mamba-2, attention, MLP) with an even global batch. No MoE: its load-balancing
// loss is computed over each rank's own tokens, so a data-parallel MoE is not the same function.
inline std::string dp_config(int steps) {
  return "model:\n"
         "  d_model: 32\n"
         "  pattern: \"M*-\"\n"
         "  mamba: {version: 2, d_state: 8, head_dim: 16, chunk: 8}\n"
         "  attention: {heads: 4, kv_heads: 2}\n"
         "  mlp: {hidden: 48}\n"
         "train: {steps: " + std::to_string(steps) + ", batch: 4, seq: 24, seed: 7, eval_every: 10, eval_batches: 2, "
         "save_every: 5, keep_checkpoints: 3, log_every: 5}\n"
         "optim: {lr: 3.0e-3, warmup: 4}\n"
         "data: {kind: text, path: data.txt, val_fraction: 0.1}\n";
}

// The largest difference between two tensor lists of the same names and sizes; printed (as the
// oracle tests do, with the tensor where it is) and returned. NaN counts as the worst.
inline double max_abs_diff(const std::vector<NamedArray>& a, const std::vector<NamedArray>& b, const std::string& what) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  std::string where;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    EXPECT_EQ(a[i].name, b[i].name);
    EXPECT_EQ(a[i].data.size(), b[i].data.size());
    for (size_t j = 0; j < a[i].data.size() && j < b[i].data.size(); ++j) {
      double d = std::fabs(double(a[i].data[j]) - double(b[i].data[j]));
      if (!(d <= worst)) worst = d, where = a[i].name;
    }
  }
  std::printf("%s: max |diff| %.3g (%s)\n", what.c_str(), worst, where.c_str());
  return worst;
}

}  // namespace strata::testing
