// Model-level parity (decode == forward, prefill-then-step == step-from-scratch) for every block
// type alone and for mixed patterns, and a gradient check of the whole model.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "models/model.h"
#include "model_testing.h"
#include "testing.h"

using namespace strata;
using strata::testing::random_tokens;
using strata::testing::tiny_model;

namespace {

struct Case {
  const char* name;
  const char* pattern;
  int mamba_version;
  const char* attention = "gqa";  // attention.kind of the '*' layers
  bool selective = true;          // mamba.selective (false: the non-selective baseline, Mamba-1)
  int window = 0;                 // attention.window (sliding window; T = 21 decodes well past it)
};

ModelConfig case_model(const Case& k) {
  ModelConfig c = tiny_model(k.pattern, k.mamba_version, k.attention);
  c.mamba.selective = k.selective;
  c.attention.window = k.window;
  return c;
}

class ModelParity : public ::testing::TestWithParam<Case> {};

TEST_P(ModelParity, DecodeEqualsForwardAndPrefillThenStep) {
  Case k = GetParam();
  Model m(case_model(k), 3);
  const int64_t B = 2, T = 21, V = m.vocab(), T1 = 13;
  auto ids = random_tokens(B * T, 5);
  Arena arena;
  Ctx ctx{Device::cpu, &arena, false};
  std::vector<float> fwd(static_cast<size_t>(B * T * V));
  m.forward_logits(ctx, fwd.data(), ids.data(), B, T, nullptr);

  // Token-by-token decode from an empty cache.
  ModelCache cache = m.allocate_cache(B, T);
  std::vector<float> dec(static_cast<size_t>(B * T * V)), step_logits(size_t(B * V));
  std::vector<int32_t> col(static_cast<size_t>(B));
  for (int64_t t = 0; t < T; ++t) {
    arena.reset();
    for (int64_t b = 0; b < B; ++b) col[size_t(b)] = ids[size_t(b * T + t)];
    m.step(ctx, step_logits.data(), col.data(), cache);
    for (int64_t b = 0; b < B; ++b)
      std::memcpy(&dec[size_t((b * T + t) * V)], &step_logits[size_t(b * V)], sizeof(float) * V);
  }
  strata::testing::expect_close(dec, fwd, 1e-4, 0.0, std::string(k.name) + " decode vs forward");

  // Prefill the first T1 tokens with forward, then step the rest.
  std::vector<int32_t> head(static_cast<size_t>(B * T1));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T1; ++t) head[size_t(b * T1 + t)] = ids[size_t(b * T + t)];
  ModelCache pc = m.allocate_cache(B, T);
  std::vector<float> pre(static_cast<size_t>(B * T1 * V));
  arena.reset();
  m.forward_logits(ctx, pre.data(), head.data(), B, T1, &pc);
  std::vector<float> tail, tail_ref;
  for (int64_t t = T1; t < T; ++t) {
    arena.reset();
    for (int64_t b = 0; b < B; ++b) col[size_t(b)] = ids[size_t(b * T + t)];
    m.step(ctx, step_logits.data(), col.data(), pc);
    tail.insert(tail.end(), step_logits.begin(), step_logits.end());
    for (int64_t b = 0; b < B; ++b)
      tail_ref.insert(tail_ref.end(), dec.begin() + (b * T + t) * V, dec.begin() + (b * T + t + 1) * V);
  }
  strata::testing::expect_close(tail, tail_ref, 1e-4, 0.0, std::string(k.name) + " prefill+step vs steps");
}

INSTANTIATE_TEST_SUITE_P(Blocks, ModelParity,
                         ::testing::Values(Case{"attention", "*", 2}, Case{"mamba1", "M", 1}, Case{"mamba2", "M", 2},
                                           Case{"mlp", "-", 2}, Case{"moe", "E", 2},
                                           Case{"jamba_mix", "M-*E", 2}, Case{"mamba1_mix", "ME*-", 1},
                                           Case{"mla", "*", 2, "mla"}, Case{"mla_mix", "M*E-", 2, "mla"},
                                           Case{"mamba1_nonselective", "M", 1, "gqa", false},
                                           Case{"nonselective_mix", "M*-", 1, "gqa", false},
                                           Case{"attention_window", "*", 2, "gqa", true, 5},
                                           Case{"window_mix", "M*-*", 2, "gqa", true, 4},
                                           Case{"mla_window", "*", 2, "mla", true, 5}),
                         [](const auto& info) { return std::string(info.param.name); });

// A sliding window of W leaves the first W positions as they are under full causal attention (they
// see the same keys) and changes every later one.
TEST(ModelWindow, ChangesOnlyPositionsPastTheWindow) {
  for (const char* kind : {"gqa", "mla"}) {
    ModelConfig c = tiny_model("*-*", 2, kind);
    Model full(c, 4);
    c.attention.window = 5;
    Model win(c, 4);  // same seed: same parameters
    const int64_t B = 2, T = 16, V = full.vocab(), W = 5;
    auto ids = random_tokens(B * T, 6);
    Arena arena;
    Ctx ctx{Device::cpu, &arena, false};
    std::vector<float> a(size_t(B * T * V)), b(size_t(B * T * V));
    full.forward_logits(ctx, a.data(), ids.data(), B, T, nullptr);
    arena.reset();
    win.forward_logits(ctx, b.data(), ids.data(), B, T, nullptr);
    for (int64_t r = 0; r < B; ++r)
      for (int64_t t = 0; t < T; ++t) {
        double d = 0;
        for (int64_t v = 0; v < V; ++v) {
          const size_t i = size_t((r * T + t) * V + v);
          d = std::max(d, double(std::abs(a[i] - b[i])));
        }
        if (t < W)
          EXPECT_EQ(d, 0.0) << kind << " position " << t << " sees the same keys";
        else
          EXPECT_GT(d, 1e-4) << kind << " position " << t << " is past the window";
      }
  }
}

// d(loss)/d(param) of the whole model against central differences (fp32 forward, double loss).
// (attention: gqa, then mla; each also with a sliding window of 3 < T; then the non-selective Mamba-1)
class ModelGradient : public ::testing::TestWithParam<const char*> {};

TEST_P(ModelGradient, MatchesFiniteDifferences) {
  const std::string name = GetParam();
  const bool nonselective = name == "mamba1_nonselective", windowed = name.ends_with("_window");
  ModelConfig c = tiny_model("M*E-", nonselective ? 1 : 2, name.substr(0, 3));
  if (windowed) c.attention.window = 3;
  if (nonselective) c.mamba.selective = false;
  c.moe.aux_loss = 0.0f;  // the aux loss's f_e is piecewise constant: keep the check to the smooth part
  Model m(c, 11);
  const int64_t B = 2, T = 9;
  auto ids = random_tokens(B * T, 1), tgt = random_tokens(B * T, 2);
  Arena arena;
  Ctx ctx{Device::cpu, &arena, true};
  ParamStore& ps = m.params();
  ps.zero_grad();
  m.forward_loss(ctx, ids.data(), tgt.data(), B, T);
  m.backward(ctx);
  std::vector<float> grad(ps.flat_grad(), ps.flat_grad() + ps.numel());
  auto loss_at = [&]() {
    arena.reset();
    return double(m.eval_loss(ctx, ids.data(), tgt.data(), B, T));
  };
  Rng pick(9);
  int checked = 0, bad = 0, skipped = 0;
  double max_err = 0;
  for (auto& info : ps.infos()) {
    for (int s = 0; s < 3; ++s) {
      int64_t i = info.offset + int64_t(pick.below(uint64_t(info.numel)));
      float keep = ps.flat()[i];
      auto central = [&](float h) {
        ps.flat()[i] = keep + h;
        double lp = loss_at();
        ps.flat()[i] = keep - h;
        double lm = loss_at();
        ps.flat()[i] = keep;
        return (lp - lm) / (2 * double(h));
      };
      double fd = central(1e-2f);
      // A top-k routing decision that flips inside [-h, h] makes the loss jump; two step sizes
      // disagreeing reveals it, and such entries are skipped (counted below).
      if (std::abs(fd - central(5e-3f)) > 5e-3 + 5e-2 * std::abs(fd)) {
        ++skipped;
        continue;
      }
      double err = std::abs(fd - grad[size_t(i)]);
      max_err = std::max(max_err, err);
      ++checked;
      if (err > 2e-3 + 5e-2 * std::abs(fd)) {
        ++bad;
        ADD_FAILURE() << info.name << "[" << i - info.offset << "]: analytic " << grad[size_t(i)] << " fd " << fd;
      }
    }
  }
  std::printf("  checked %d parameter entries (%d skipped: routing flips), max abs err %.3e\n", checked, skipped, max_err);
  EXPECT_LE(skipped, checked / 10);
  EXPECT_EQ(bad, 0);
}

INSTANTIATE_TEST_SUITE_P(Attention, ModelGradient,
                         ::testing::Values("gqa", "mla", "gqa_window", "mla_window", "mamba1_nonselective"),
                         [](const auto& info) { return std::string(info.param); });

// Gradient accumulation passes 1/accum as loss_scale; every gradient, the MoE aux loss's included,
// must carry it (the router gradient is where a missed scale would show).
TEST(ModelBackward, LossScaleScalesEveryGradientIncludingAuxLoss) {
  ModelConfig c = tiny_model("E-");
  c.moe.aux_loss = 0.5f;
  Model m(c, 5);
  const int64_t B = 2, T = 7;
  auto ids = random_tokens(B * T, 3), tgt = random_tokens(B * T, 4);
  Arena arena;
  Ctx ctx{Device::cpu, &arena, true};
  ParamStore& ps = m.params();
  auto grads_at = [&](float scale) {
    arena.reset();
    ps.zero_grad();
    m.forward_loss(ctx, ids.data(), tgt.data(), B, T);
    m.backward(ctx, scale);
    return std::vector<float>(ps.flat_grad(), ps.flat_grad() + ps.numel());
  };
  auto full = grads_at(1.0f), quarter = grads_at(0.25f);
  EXPECT_EQ(ctx.loss_scale, 1.0f);
  for (auto& info : ps.infos())
    for (int64_t i = info.offset; i < info.offset + info.numel; ++i)
      ASSERT_NEAR(quarter[size_t(i)], 0.25f * full[size_t(i)], 1e-7 + 1e-6 * std::abs(full[size_t(i)])) << info.name;
}

TEST(ModelBackward, RefusesWithoutForward) {
  Model m(tiny_model("*-"), 1);
  Arena arena;
  Ctx ctx{Device::cpu, &arena, true};
  EXPECT_THROW(m.backward(ctx), strata::Error);
}

}  // namespace
