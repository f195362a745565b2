// The Decoder (infer/decoder.h) on the CPU: the same logits as Model::step, prefill then steps as
// forward, bad ids refused before any state changes. (Its CUDA-graph path: tests/cuda/test_cuda_model.cpp and
// tests/cuda/test_cuda_decode_streams.cpp.)
#include <gtest/gtest.h>

#include <cstring>

#include "core/error.h"
#include "core/rng.h"
#include "infer/decoder.h"
#include "infer/generate.h"
#include "models/model.h"
#include "model_testing.h"
#include "testing.h"

using namespace strata;

namespace {

// The shared tiny hybrid, without a shared expert.
ModelConfig hybrid() {
  ModelConfig c = strata::testing::tiny_model("M*E-");
  c.moe.shared_experts = 0;
  return c;
}

TEST(Decoder, StepsEqualForwardAndPrefill) {
  Model m(hybrid(), 4);
  const int64_t B = 2, T = 15, V = m.vocab(), T1 = 9;
  const auto ids = strata::testing::random_tokens(B * T, 8);
  std::vector<float> fwd(size_t(B * T * V));
  Arena a;
  Ctx ctx{Device::cpu, &a, false};
  m.forward_logits(ctx, fwd.data(), ids.data(), B, T, nullptr);

  Decoder dec(m, B, T);
  EXPECT_EQ(dec.device(), Device::cpu);
  std::vector<int32_t> col(static_cast<size_t>(B));
  std::vector<float> lg(static_cast<size_t>(B * V));
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t b = 0; b < B; ++b) col[size_t(b)] = ids[size_t(b * T + t)];
    dec.step(col.data(), lg.data());
    for (int64_t b = 0; b < B; ++b) {
      std::vector<float> got(lg.begin() + b * V, lg.begin() + (b + 1) * V);
      std::vector<float> want(fwd.begin() + (b * T + t) * V, fwd.begin() + (b * T + t + 1) * V);
      strata::testing::expect_close(got, want, 1e-4, 0.0, "decoder step vs forward");
    }
  }
  EXPECT_EQ(dec.pos(), T);
  EXPECT_EQ(dec.graph_steps(), 0);
  EXPECT_EQ(dec.graph_instantiations() + dec.graph_updates(), 0);  // graphs are CUDA's

  // Prefill the first T1 tokens, then step: the last-position logits match the forward's.
  Decoder pd(m, B, T);
  std::vector<int32_t> head(size_t(B * T1));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T1; ++t) head[size_t(b * T1 + t)] = ids[size_t(b * T + t)];
  pd.prefill(head.data(), T1, lg.data());
  for (int64_t b = 0; b < B; ++b) {
    std::vector<float> got(lg.begin() + b * V, lg.begin() + (b + 1) * V);
    std::vector<float> want(fwd.begin() + (b * T + T1 - 1) * V, fwd.begin() + (b * T + T1) * V);
    strata::testing::expect_close(got, want, 1e-4, 0.0, "decoder prefill vs forward");
  }
  EXPECT_EQ(pd.pos(), T1);
}

TEST(Decoder, RefusesBadIdsWithoutAdvancing) {
  Model m(hybrid(), 4);
  Decoder dec(m, 1, 4);
  std::vector<float> lg(size_t(m.vocab()));
  const int32_t bad = int32_t(m.vocab()), neg = -1, ok = 7;
  EXPECT_THROW(dec.step(&bad, lg.data()), Error);
  EXPECT_THROW(dec.step(&neg, lg.data()), Error);
  EXPECT_EQ(dec.pos(), 0);
  dec.step(&ok, lg.data());
  EXPECT_EQ(dec.pos(), 1);
}

TEST(Decoder, ScoreDecodeEqualsScoreForward) {
  Model m(hybrid(), 5);
  std::vector<int32_t> ids = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3};
  auto f = score(m, ids, ScoreMode::forward);
  auto d = score(m, ids, ScoreMode::decode);
  strata::testing::expect_close(d, f, 1e-4, 0.0, "score decode vs forward");
}

}  // namespace
