// bf16 mixed precision through the whole model: every block kind's projections (and the LM head,
// tied or not) run through layers/linear.h's bf16 path, in training (loss and every parameter's
// gradient), prefill and decode steps, and land within bf16 rounding of fp32. A projection that
// bypassed the shadow would either throw (a weight not in the ParamStore) or leave its gradient
// bit-identical to fp32, which the test also rules out.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "layers/linear.h"
#include "models/model.h"
#include "model_testing.h"
#include "testing.h"

using namespace strata;

namespace {

struct Case {
  const char* name;
  const char* pattern;
  int mamba_version;
  const char* attention;
  bool bias, tie;
};

ModelConfig config_of(const Case& k) {
  ModelConfig c = strata::testing::tiny_model(k.pattern, k.mamba_version, k.attention);
  c.mamba.bias = k.bias;  // in_proj / out_proj biases: the bias path of the bf16 linear
  c.tie_embeddings = k.tie;
  return c;
}

double rel_norm(const float* a, const float* b, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; ++i) num += (double(a[i]) - double(b[i])) * (double(a[i]) - double(b[i])), den += double(b[i]) * double(b[i]);
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

class ModelBf16 : public ::testing::TestWithParam<Case> {};

TEST_P(ModelBf16, LossGradientsAndDecodeTrackFp32) {
  const Case& k = GetParam();
  Model m(config_of(k), 3);
  ParamStore& ps = m.params();
  const int64_t B = 2, T = 11, V = m.vocab();
  auto ids = strata::testing::random_tokens(B * T, 1), tgt = strata::testing::random_tokens(B * T, 2);
  Arena arena;
  Ctx ctx{Device::cpu, &arena, true};
  auto train_step = [&](std::vector<float>& grad) {
    arena.reset();
    ps.zero_grad();
    const float loss = m.forward_loss(ctx, ids.data(), tgt.data(), B, T);
    m.backward(ctx);
    grad.assign(ps.flat_grad(), ps.flat_grad() + ps.numel());
    return loss;
  };
  // Prefill of T - 3 tokens then 3 decode steps: the logits of the last step.
  auto decode = [&]() {
    arena.reset();
    ModelCache cache = m.allocate_cache(B, T);
    std::vector<int32_t> prompt(size_t(B * (T - 3)));
    for (int64_t b = 0; b < B; ++b)
      std::copy(ids.begin() + b * T, ids.begin() + b * T + T - 3, prompt.begin() + b * (T - 3));
    std::vector<float> logits(size_t(B * V));
    m.prefill(ctx, logits.data(), prompt.data(), B, T - 3, cache);
    for (int64_t t = T - 3; t < T; ++t) {
      std::vector<int32_t> next(static_cast<size_t>(B));
      for (int64_t b = 0; b < B; ++b) next[size_t(b)] = ids[size_t(b * T + t)];
      m.step(ctx, logits.data(), next.data(), cache);
    }
    return logits;
  };

  std::vector<float> g32, g16;
  const float loss32 = train_step(g32);
  const auto logits32 = decode();

  enable_bf16_shadow(ps);
  ctx.precision = Precision::bf16;
  ctx.params = &ps;
  const float loss16 = train_step(g16);
  const auto logits16 = decode();

  const double dloss = std::abs(double(loss16) - double(loss32)) / double(loss32);
  const double dlogits = rel_norm(logits16.data(), logits32.data(), B * V);
  std::printf("  loss fp32 %.6f bf16 %.6f (rel %.2e); decode logits rel %.2e\n", loss32, loss16, dloss, dlogits);
  EXPECT_LT(dloss, 1e-3);
  EXPECT_NE(loss16, loss32);
  EXPECT_LT(dlogits, 2e-2);
  EXPECT_GT(dlogits, 0.0);
  double worst = 0;
  for (auto& p : ps.infos()) {
    const double r = rel_norm(g16.data() + p.offset, g32.data() + p.offset, p.numel);
    worst = std::max(worst, r);
    // Every parameter's gradient moves (all of them are downstream of some bf16 product, the
    // routed experts' included: their inputs come through bf16 projections), but only by bf16 noise.
    EXPECT_GT(r, 0.0) << p.name << ": gradient bit-identical to fp32";
    EXPECT_LT(r, 5e-2) << p.name;
  }
  std::printf("  worst per-parameter gradient rel diff %.2e; global %.2e\n", worst,
              rel_norm(g16.data(), g32.data(), ps.numel()));
  EXPECT_LT(rel_norm(g16.data(), g32.data(), ps.numel()), 3e-2);
}

INSTANTIATE_TEST_SUITE_P(Patterns, ModelBf16,
                         ::testing::Values(Case{"mamba2_gqa_moe_mlp_tied", "M*E-", 2, "gqa", false, true},
                                           Case{"mamba1_mla_moe_mlp_bias_untied", "M*E-", 1, "mla", true, false}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
