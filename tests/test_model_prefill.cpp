// Model::prefill (last-position logits only) against forward_logits with a cache: the same logits for
// each sequence's last position, and the same cache (the steps after it give the same logits).
#include <gtest/gtest.h>

#include <cstring>

#include "core/error.h"
#include "models/model.h"
#include "model_testing.h"
#include "testing.h"

using namespace strata;

namespace {

// The shared tiny models, without a shared expert.
ModelConfig tiny(const std::string& pattern, int mamba_version, const std::string& attention) {
  ModelConfig c = strata::testing::tiny_model(pattern, mamba_version, attention);
  c.moe.shared_experts = 0;
  return c;
}

struct Case {
  const char* name;
  const char* pattern;
  int mamba_version;
  const char* attention;
};

class Prefill : public ::testing::TestWithParam<Case> {};

TEST_P(Prefill, LastLogitsAndCacheMatchForwardLogits) {
  Case k = GetParam();
  Model m(tiny(k.pattern, k.mamba_version, k.attention), 7);
  const int64_t B = 2, T = 11, S = 4, V = m.vocab();
  Rng r(3);
  std::vector<int32_t> ids(size_t(B * T)), steps(size_t(B * S));
  for (auto& x : ids) x = int32_t(r.below(uint64_t(V)));
  for (auto& x : steps) x = int32_t(r.below(uint64_t(V)));
  Arena arena;
  Ctx ctx{Device::cpu, &arena, false};

  ModelCache ref_cache = m.allocate_cache(B, T + S), cache = m.allocate_cache(B, T + S);
  std::vector<float> all(size_t(B * T * V)), want, got(size_t(B * V));
  m.forward_logits(ctx, all.data(), ids.data(), B, T, &ref_cache);
  for (int64_t b = 0; b < B; ++b)
    want.insert(want.end(), all.begin() + (b * T + T - 1) * V, all.begin() + (b * T + T) * V);
  arena.reset();
  m.prefill(ctx, got.data(), ids.data(), B, T, cache);
  strata::testing::expect_close(got, want, 1e-5, 1e-5, std::string(k.name) + " prefill logits");
  EXPECT_EQ(cache.pos, T);

  std::vector<float> a(size_t(B * V)), b(size_t(B * V));
  for (int64_t s = 0; s < S; ++s) {
    arena.reset();
    m.step(ctx, a.data(), &steps[size_t(s * B)], ref_cache);
    m.step(ctx, b.data(), &steps[size_t(s * B)], cache);
    strata::testing::expect_close(b, a, 1e-5, 1e-5, std::string(k.name) + " step " + std::to_string(s));
  }
}

INSTANTIATE_TEST_SUITE_P(Blocks, Prefill,
                         ::testing::Values(Case{"attention_mlp", "*-", 2, "gqa"}, Case{"mamba1", "M", 1, "gqa"},
                                           Case{"jamba_mix", "M-*E", 2, "gqa"}, Case{"mla", "*-", 2, "mla"}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(Prefill, RefusesAFullCacheAndAnEmptyPrompt) {
  Model m(tiny("*", 2, "gqa"), 1);
  Arena arena;
  Ctx ctx{Device::cpu, &arena, false};
  std::vector<int32_t> ids(4, 1);
  std::vector<float> logits(size_t(m.vocab()));
  ModelCache small = m.allocate_cache(1, 3);
  EXPECT_THROW(m.prefill(ctx, logits.data(), ids.data(), 1, 4, small), Error);
  ModelCache c = m.allocate_cache(1, 8);
  EXPECT_THROW(m.prefill(ctx, logits.data(), ids.data(), 1, 0, c), Error);
  m.prefill(ctx, logits.data(), ids.data(), 1, 4, c);
  EXPECT_THROW(m.prefill(ctx, logits.data(), ids.data(), 1, 4, c), Error);  // not empty any more
}

}  // namespace
