// The serving engine's model side on the GPU: ragged RowBatch schedules through a ModelRunner whose
// model lives on cuda (pages and state slots on the device, the paged decode kernel's CUDA twin)
// give every position the logits the CPU's forward_logits gives the whole sequence, and a prefix
// snapshot (copy_state) continues exactly like the sequence it was taken from. Skipped, with the
// reason, where no CUDA device is usable.
#include <gtest/gtest.h>

#include <cstring>

#include "cuda_testing.h"
#include "model_testing.h"
#include "step_rows_testing.h"

using namespace strata;

namespace {

struct Case {
  const char* name;
  const char* pattern;
  int mamba_version;
  const char* attention;
  int window = 0;
};

class CudaStepRows : public ::testing::TestWithParam<Case> {};

// fp32 on both sides: the differences are summation order only.
TEST_P(CudaStepRows, RaggedScheduleMatchesCpuForwardLogits) {
  STRATA_SKIP_WITHOUT_CUDA();
  const Case k = GetParam();
  ModelConfig cfg = strata::testing::tiny_model(k.pattern, k.mamba_version, k.attention, 2);
  cfg.attention.window = k.window;
  Model cpu_m(cfg, 3), gpu_m(cfg, 3);
  gpu_m.params().to_device(Device::cuda);
  const auto seqs = strata::testing::random_seqs({23, 9, 1, 17, 30}, 100);
  std::vector<std::vector<float>> want;
  Arena arena;
  Ctx ctx{Device::cpu, &arena, false};
  for (auto& s : seqs) {
    arena.reset();
    std::vector<float> l(s.size() * size_t(cpu_m.vocab()));
    cpu_m.forward_logits(ctx, l.data(), s.data(), 1, int64_t(s.size()), nullptr);
    want.push_back(l);
  }
  for (int64_t tile : {int64_t(8), int64_t(0)}) {
    strata::testing::Schedule sc;
    sc.seed = 2;
    sc.max_chunk = 9;
    const auto got = strata::testing::run_schedule(gpu_m, seqs, sc, tile);
    for (size_t s = 0; s < seqs.size(); ++s) {
      const double d = strata::testing::max_abs_diff(got[s], want[s]);
      std::printf("  %s tile %ld seq %zu: max |cuda step_rows - cpu forward_logits| = %.3g\n", k.name, long(tile), s,
                  d);
      EXPECT_LE(d, 2e-4) << k.name << " tile " << tile << " seq " << s;
    }
  }
}

// With the runner's row tiles a sequence's logits are bitwise the same alone (one row at a time) and
// mixed with other sequences under another chunking: cuBLAS products of one fixed shape, per-row
// kernels, and the paged kernel without key splits (split_keys = false).
TEST_P(CudaStepRows, BatchInvariantWithRowTiles) {
  STRATA_SKIP_WITHOUT_CUDA();
  const Case k = GetParam();
  ModelConfig cfg = strata::testing::tiny_model(k.pattern, k.mamba_version, k.attention, 2);
  cfg.attention.window = k.window;
  Model m(cfg, 3);
  m.params().to_device(Device::cuda);
  const auto mine = strata::testing::random_tokens(150, 7);  // long enough for the paged kernel to want splits
  strata::testing::Schedule alone;
  alone.max_chunk = 1;
  const auto ref = strata::testing::run_schedule(m, {mine}, alone, 8)[0];
  for (uint64_t seed : {1, 2}) {
    strata::testing::Schedule sc;
    sc.seed = seed;
    sc.max_chunk = int64_t(seed) * 13;
    auto seqs = strata::testing::random_seqs({40, 5, 90}, 50 + seed);
    seqs.insert(seqs.begin() + 1, mine);
    const auto mixed = strata::testing::run_schedule(m, seqs, sc, 8)[1];
    EXPECT_EQ(0, std::memcmp(mixed.data(), ref.data(), sizeof(float) * ref.size()))
        << "seed " << seed << ": max diff " << strata::testing::max_abs_diff(mixed, ref);
  }
}

INSTANTIATE_TEST_SUITE_P(Models, CudaStepRows,
                         ::testing::Values(Case{"hybrid_m2", "M*-E", 2, "gqa"}, Case{"hybrid_m1_mla", "M-*E", 1, "mla"},
                                           Case{"gqa_window5", "*-", 2, "gqa", 5}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
