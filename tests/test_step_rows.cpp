// The serving engine's model side (Model::step_rows through infer/model_runner.h): ragged batches of
// several sequences (prefill chunks of random sizes mixed with other sequences' decode rows,
// shuffled page ids, state slots that are not the sequence indices) give every position the logits
// Model::forward_logits gives the whole sequence; with the runner's row tiles a sequence's logits
// are bitwise the same alone, chunked differently, or mixed with other sequences; copy_state /
// reset_state behave as prefix snapshots need; malformed batches are refused. Sliding-window
// attention (attention.window) runs through the paged kernel's window too.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <numeric>

#include "core/error.h"
#include "core/rng.h"
#include "infer/model_runner.h"
#include "input_error_testing.h"
#include "model_testing.h"
#include "models/model.h"
#include "models/quantize.h"
#include "step_rows_testing.h"

using namespace strata;

namespace {

using strata::testing::kPage;
using strata::testing::max_abs_diff;
using strata::testing::random_seqs;
using strata::testing::run_schedule;
using strata::testing::Schedule;

ModelConfig tiny(const std::string& pattern, int mamba_version = 2, const std::string& attention = "gqa") {
  return strata::testing::tiny_model(pattern, mamba_version, attention);
}

struct Case {
  const char* name;
  const char* pattern;
  int mamba_version;
  const char* attention;
  int window = 0;  // attention.window (sliding window)
};

Model make(const Case& k) {
  ModelConfig c = tiny(k.pattern, k.mamba_version, k.attention);
  c.attention.window = k.window;
  return Model(c, 11);
}

class StepRows : public ::testing::TestWithParam<Case> {};

// Every position's logits from the ragged schedules against forward_logits of each full sequence,
// with and without row tiles.
TEST_P(StepRows, RaggedScheduleMatchesForwardLogits) {
  const Case k = GetParam();
  Model m = make(k);
  const auto seqs = random_seqs({23, 9, 1, 17, 30}, 100);
  Arena arena;
  Ctx ctx{Device::cpu, &arena, false};
  std::vector<std::vector<float>> want;
  for (auto& s : seqs) {
    arena.reset();
    std::vector<float> l(s.size() * size_t(m.vocab()));
    m.forward_logits(ctx, l.data(), s.data(), 1, int64_t(s.size()), nullptr);
    want.push_back(l);
  }
  for (int64_t tile : {int64_t(16), int64_t(0)})
    for (uint64_t seed : {1, 2, 3}) {
      Schedule sc;
      sc.seed = seed;
      sc.max_chunk = seed == 3 ? 12 : 5;
      const auto got = run_schedule(m, seqs, sc, tile);
      double worst = 0;
      for (size_t s = 0; s < seqs.size(); ++s) {
        const double d = max_abs_diff(got[s], want[s]);
        worst = std::max(worst, d);
        EXPECT_LE(d, 1e-4) << k.name << " tile " << tile << " seed " << seed << " seq " << s;
      }
      std::printf("  %s tile %ld seed %lu: max |step_rows - forward_logits| = %.3g\n", k.name, long(tile),
                  (unsigned long)seed, worst);
    }
}

// One sequence's logits, bitwise: alone one row at a time, alone in chunks, and mixed with other
// sequences under different chunkings.
TEST_P(StepRows, BatchInvariantWithRowTiles) {
  const Case k = GetParam();
  Model m = make(k);
  const auto mine = strata::testing::random_tokens(29, 7);
  for (int64_t tile : {int64_t(1), int64_t(8), int64_t(16)}) {
    Schedule alone;
    alone.max_chunk = 1;
    const auto ref = run_schedule(m, {mine}, alone, tile)[0];
    for (uint64_t seed : {1, 2, 3, 4}) {
      Schedule sc;
      sc.seed = seed;
      sc.max_chunk = int64_t(seed) * 5;
      const auto only = run_schedule(m, {mine}, sc, tile)[0];
      EXPECT_EQ(0, std::memcmp(only.data(), ref.data(), sizeof(float) * ref.size()))
          << "tile " << tile << ", alone, chunks, seed " << seed;
      auto seqs = random_seqs({13, 40, 5, 22, 31, 2, 17}, 50 + seed);
      seqs.insert(seqs.begin() + int64_t(seed % 5), mine);
      const auto mixed = run_schedule(m, seqs, sc, tile)[seed % 5];
      EXPECT_EQ(0, std::memcmp(mixed.data(), ref.data(), sizeof(float) * ref.size()))
          << "tile " << tile << ", mixed, seed " << seed << ": max diff " << max_abs_diff(mixed, ref);
    }
  }
}

// The same at the width of a small real model (d_model 256), where the GEMM library may pick other
// kernels and blockings than at the tiny widths above; the runner's default tile.
TEST(StepRowsWide, BatchInvariantAtDModel256) {
  Model m(strata::testing::tiny_model("M*-E", 2, "gqa", 8), 3);
  const auto mine = strata::testing::random_tokens(37, 9);
  Schedule alone;
  alone.max_chunk = 1;
  const int64_t tile = RunnerOptions{}.row_tile;
  const auto ref = run_schedule(m, {mine}, alone, tile)[0];
  for (uint64_t seed : {1, 2}) {
    Schedule sc;
    sc.seed = seed;
    sc.max_chunk = 24;
    auto seqs = random_seqs({45, 3, 60, 21}, 70 + seed);
    seqs.insert(seqs.begin() + 1, mine);
    const auto mixed = run_schedule(m, seqs, sc, tile)[1];
    EXPECT_EQ(0, std::memcmp(mixed.data(), ref.data(), sizeof(float) * ref.size()))
        << "seed " << seed << ": max diff " << max_abs_diff(mixed, ref);
  }
}

// Quantised weights (int8 / int4): the GEMV path of quant_linear_forward for every batch size.
TEST(StepRowsWide, BatchInvariantQuantised) {
  for (int bits : {8, 4, -8, -4}) {  // negative: the same with int8 activations
    Model m(strata::testing::tiny_model("M*-E", 2, "gqa", 8), 3);
    quantize_model(m, std::abs(bits));
    if (bits < 0) set_activations(m, "int8");
    const auto mine = strata::testing::random_tokens(29, 4);
    Schedule alone;
    alone.max_chunk = 1;
    const int64_t tile = RunnerOptions{}.row_tile;
    const auto ref = run_schedule(m, {mine}, alone, tile)[0];
    Schedule sc;
    sc.seed = 5;
    sc.max_chunk = 24;
    auto seqs = random_seqs({45, 3, 21}, 90);
    seqs.insert(seqs.begin() + 2, mine);
    const auto mixed = run_schedule(m, seqs, sc, tile)[2];
    EXPECT_EQ(0, std::memcmp(mixed.data(), ref.data(), sizeof(float) * ref.size()))
        << "int" << std::abs(bits) << (bits < 0 ? " (int8 activations)" : "") << ": max diff " << max_abs_diff(mixed, ref);
  }
}

INSTANTIATE_TEST_SUITE_P(Blocks, StepRows,
                         ::testing::Values(Case{"gqa", "*", 2, "gqa"}, Case{"mla", "*", 2, "mla"},
                                           Case{"mamba1", "M", 1, "gqa"}, Case{"mamba2", "M", 2, "gqa"},
                                           Case{"mlp", "-", 2, "gqa"}, Case{"moe", "E", 2, "gqa"},
                                           Case{"hybrid_m2", "M*-E", 2, "gqa"}, Case{"hybrid_m1_mla", "M-*E", 1, "mla"},
                                           Case{"gqa_window5", "*-", 2, "gqa", 5}, Case{"mla_window7", "*", 2, "mla", 7}),
                         [](const auto& info) { return std::string(info.param.name); });

// A runner for the hybrid M*-E and one sequence's batch through it.
struct Hybrid {
  Model m{tiny("M*-E"), 5};
  PoolSizes ps{kPage, 16, 4, 4};
  std::unique_ptr<ModelRunner> runner = make_model_runner(m, ps);
};

RowBatch chunk(const std::vector<int32_t>& ids, int32_t pos0, std::vector<int32_t> table, int32_t slot) {
  RowBatch b;
  for (size_t i = 0; i < ids.size(); ++i) {
    b.ids.push_back(ids[i]);
    b.pos.push_back(pos0 + int32_t(i));
    b.seq.push_back(0);
  }
  b.max_pages = int64_t(table.size());
  b.block_table = std::move(table);
  b.state_slot = {slot};
  b.logits_rows = {int32_t(ids.size()) - 1};
  return b;
}

// A prefix snapshot: the state after 8 tokens copied to another slot, the prefix's 2 pages shared by
// a second sequence, which then continues from position 8 with the same logits as a fresh run.
TEST(StepRowsRunner, CopyStateIsAPrefixSnapshotAndResetStartsOver) {
  Hybrid h;
  const int64_t V = h.m.vocab();
  const auto toks = strata::testing::random_tokens(12, 3);
  const std::vector<int32_t> pre(toks.begin(), toks.begin() + 8), rest(toks.begin() + 8, toks.end());
  std::vector<float> want(static_cast<size_t>(V)), got(static_cast<size_t>(V)), again(static_cast<size_t>(V));
  // Fresh: the whole sequence in slot 2, pages 5, 9, 1.
  h.runner->reset_state(2);
  h.runner->run(chunk(toks, 0, {5, 9, 1, -1}, 2), want.data());
  // Prefix in slot 0 (pages 3, 7), snapshot to slot 3, then the suffix from the snapshot (page 11).
  h.runner->reset_state(0);
  h.runner->run(chunk(pre, 0, {3, 7, -1, -1}, 0), got.data());
  h.runner->copy_state(0, 3);
  h.runner->run(chunk(rest, 8, {3, 7, 11, -1}, 3), got.data());
  EXPECT_EQ(0, std::memcmp(got.data(), want.data(), sizeof(float) * size_t(V)));
  // The prefix's own slot goes on unaffected by the copy's use.
  h.runner->run(chunk(rest, 8, {3, 7, 12, -1}, 0), again.data());
  EXPECT_EQ(0, std::memcmp(again.data(), want.data(), sizeof(float) * size_t(V)));
  // reset: slot 0 starts a new sequence from position 0.
  h.runner->reset_state(0);
  h.runner->run(chunk(toks, 0, {4, 6, 8, -1}, 0), got.data());
  EXPECT_EQ(0, std::memcmp(got.data(), want.data(), sizeof(float) * size_t(V)));
  // Sizes reported for the scheduler's budget: one page of the one attention layer (k and v of
  // kv_heads * head_dim floats per token), one slot of the Mamba-2 layer.
  EXPECT_EQ(h.runner->page_bytes(), int64_t(sizeof(float)) * kPage * 2 * 2 * 8);
  EXPECT_GT(h.runner->state_slot_bytes(), 0);
  EXPECT_TRUE(h.runner->uses_pages());
  EXPECT_TRUE(h.runner->uses_state_slots());
}

TEST(StepRowsRunner, RefusesBadBatches) {
  Hybrid h;
  std::vector<float> l(size_t(4 * h.m.vocab()));
  const auto toks = strata::testing::random_tokens(6, 4);
  h.runner->reset_state(1);
  auto refused = [&](RowBatch b, std::initializer_list<const char*> words) {
    const std::string e = strata::testing::error_of([&] { h.runner->run(b, l.data()); });
    for (const char* w : words) EXPECT_NE(e.find(w), std::string::npos) << "'" << w << "' not in: " << e;
  };
  refused(chunk(toks, 0, {0, 16, -1, -1}, 1), {"page", "16", "num_pages"});
  refused(chunk(toks, 0, {0, -1, -1, -1}, 1), {"page", "-1"});
  refused(chunk(toks, 0, {0, 1, -1, -1}, 4), {"state slot 4", "num_state_slots"});
  refused(chunk(toks, 3, {0, 1, -1, -1}, 1), {"position 3", "consumed 0"});
  refused(chunk(strata::testing::random_tokens(17, 1), 0, {0, 1, 2, 3}, 1), {"position 16", "max_pages"});
  RowBatch gap = chunk(toks, 0, {0, 1, -1, -1}, 1);
  gap.pos[3] = 7;
  refused(gap, {"row 3", "does not follow"});
  RowBatch vocab = chunk(toks, 0, {0, 1, -1, -1}, 1);
  vocab.ids[2] = 256;
  refused(vocab, {"row 2", "token id 256"});
  RowBatch split = chunk(toks, 0, {0, 1, -1, -1, 2, 3, -1, -1}, 1);
  split.max_pages = 4;
  split.state_slot = {1, 2};
  split.seq = {0, 0, 1, 1, 0, 0};
  split.pos = {0, 1, 0, 1, 2, 3};
  h.runner->reset_state(2);
  refused(split, {"contiguous"});
  RowBatch lrow = chunk(toks, 0, {0, 1, -1, -1}, 1);
  lrow.logits_rows = {6};
  refused(lrow, {"logits row 6"});
  // Nothing refused changed the state: the good batch still starts at position 0.
  EXPECT_NO_THROW(h.runner->run(chunk(toks, 0, {0, 1, -1, -1}, 1), l.data()));
}

TEST(StepRowsRunner, RefusesPoolsTheModelNeeds) {
  Model m(tiny("M*"), 1);
  EXPECT_THROW(make_model_runner(m, PoolSizes{16, 0, 4, 2}), InputError);
  EXPECT_THROW(make_model_runner(m, PoolSizes{16, 8, 4, 0}), InputError);
  Model mlp(tiny("-"), 1);
  auto r = make_model_runner(mlp, PoolSizes{16, 0, 0, 0});
  EXPECT_FALSE(r->uses_pages());
  EXPECT_FALSE(r->uses_state_slots());
}

}  // namespace
