// SwiGLU MLP block: parameter names/shapes/init, forward against a double reference, forward vs
// step parity, prefill-then-step, whole-layer gradients against fp32 central finite differences,
// and backward refusing to run without a training forward.
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "layers/mlp.h"
#include "layer_gradcheck.h"
#include "testing.h"

using namespace strata;
namespace st = strata::testing;
using st::expect_close;

namespace {

const char* kPrefix = "layers.1.mlp";

struct Fixture {
  ModelConfig cfg;
  ParamStore store;
  std::unique_ptr<Block> blk;
  Arena arena;
  Ctx ctx;

  Fixture(int64_t D, int64_t H, uint64_t seed) {
    cfg.d_model = int(D);
    cfg.mlp.hidden = int(H);
    cfg.pattern = "-*-";
    cfg.repeat = 2;  // n_layers = 6
    cfg.init_std = 0.05f;
    resolve(cfg);
    blk = make_mlp(cfg, store, kPrefix);
    store.allocate(seed);
    ctx.arena = &arena;
  }
  float* p(const std::string& sub) { return store.data(ParamRef{store.find(std::string(kPrefix) + "." + sub)}); }
  // Weights of order 1/sqrt(fan_in) so that outputs and gradients are O(0.1..1), well above the FD noise.
  void randomize(uint64_t seed) {
    for (size_t i = 0; i < store.infos().size(); ++i) {
      const auto& in = store.infos()[i];
      auto v = st::randn(size_t(in.numel), seed + i, 1.0f / std::sqrt(float(in.shape.back())));
      std::memcpy(store.flat() + in.offset, v.data(), sizeof(float) * v.size());
    }
  }
  std::vector<float> forward(const std::vector<float>& x, int64_t B, int64_t T, bool training) {
    std::vector<float> y(size_t(B * T * cfg.d_model), 1e30f);
    ctx.training = training;
    blk->forward(ctx, y.data(), x.data(), B, T, nullptr);
    return y;
  }
};

// y = (silu(x Wg^T) * (x Wu^T)) Wd^T in double.   x[N, D] -> y[N, D]
std::vector<double> ref_mlp(Fixture& f, const std::vector<float>& x, int64_t N) {
  const int64_t D = f.cfg.d_model, H = f.cfg.mlp.hidden;
  const float *wg = f.p("gate_proj.weight"), *wu = f.p("up_proj.weight"), *wd = f.p("down_proj.weight");
  std::vector<double> y(N * D, 0.0), a(H);
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t h = 0; h < H; ++h) {
      double g = 0, u = 0;
      for (int64_t d = 0; d < D; ++d) g += double(wg[h * D + d]) * x[n * D + d], u += double(wu[h * D + d]) * x[n * D + d];
      a[h] = g / (1 + std::exp(-g)) * u;
    }
    for (int64_t d = 0; d < D; ++d)
      for (int64_t h = 0; h < H; ++h) y[n * D + d] += double(wd[d * H + h]) * a[h];
  }
  return y;
}

}  // namespace

TEST(LayerMlp, ParametersAndInit) {
  Fixture f(48, 96, 1);
  auto& infos = f.store.infos();
  ASSERT_EQ(infos.size(), 3u);
  EXPECT_EQ(infos[0].name, "layers.1.mlp.gate_proj.weight");
  EXPECT_EQ(infos[1].name, "layers.1.mlp.up_proj.weight");
  EXPECT_EQ(infos[2].name, "layers.1.mlp.down_proj.weight");
  EXPECT_EQ(infos[0].shape, (Shape{96, 48}));
  EXPECT_EQ(infos[1].shape, (Shape{96, 48}));
  EXPECT_EQ(infos[2].shape, (Shape{48, 96}));
  for (auto& in : infos) EXPECT_TRUE(in.decay) << in.name;
  // Sample std of 4608 normals is within ~2% of the true one; 10% leaves room.
  const double want[3] = {0.05, 0.05, 0.05 / std::sqrt(12.0)};
  for (int i = 0; i < 3; ++i) {
    const float* v = f.store.flat() + infos[i].offset;
    double ss = 0;
    for (int64_t j = 0; j < infos[i].numel; ++j) ss += double(v[j]) * v[j];
    const double sd = std::sqrt(ss / double(infos[i].numel));
    std::printf("  %s std=%.4f want %.4f\n", infos[i].name.c_str(), sd, want[i]);
    EXPECT_NEAR(sd, want[i], 0.1 * want[i]) << infos[i].name;
  }
  EXPECT_EQ(f.blk->kind(), "mlp");
  EXPECT_DOUBLE_EQ(f.blk->flops_per_token(100), 6.0 * 48 * 96);
  EXPECT_EQ(f.blk->allocate_cache(2, 16), nullptr);
  EXPECT_EQ(f.blk->cache_bytes_per_token(), 0);
  EXPECT_EQ(f.blk->cache_bytes_fixed(), 0);
}

TEST(LayerMlp, ForwardMatchesDoubleReference) {
  Fixture f(40, 72, 2);
  f.randomize(20);
  const int64_t B = 3, T = 5, D = 40;
  auto x = st::randn(B * T * D, 21);
  auto y = f.forward(x, B, T, false);
  expect_close(y, ref_mlp(f, x, B * T), 1e-5, 1e-4, "y vs double ref");
  f.arena.reset();
  auto yt = f.forward(x, B, T, true);  // the training path computes the same values
  expect_close(yt, y, 0, 0, "training forward == inference forward");
}

TEST(LayerMlp, StepParityAndPrefill) {
  Fixture f(24, 40, 3);
  f.randomize(30);
  const int64_t B = 2, T = 13, T1 = 6, D = 24;
  auto x = st::randn(B * T * D, 31);
  auto y = f.forward(x, B, T, false);
  EXPECT_EQ(f.blk->allocate_cache(B, T), nullptr);  // stateless: no cache to fill or compare
  // (a) T steps from scratch vs the forward over T; (b) forward over the first T1, then steps.
  std::vector<float> steps(B * T * D), xt(B * D), yt(B * D);
  for (int64_t t = 0; t < T; ++t) {
    f.arena.reset();
    for (int64_t b = 0; b < B; ++b) std::memcpy(&xt[b * D], &x[(b * T + t) * D], sizeof(float) * D);
    f.blk->step(f.ctx, yt.data(), xt.data(), B, nullptr);
    for (int64_t b = 0; b < B; ++b) std::memcpy(&steps[(b * T + t) * D], &yt[b * D], sizeof(float) * D);
  }
  expect_close(steps, y, 1e-4, 0, "steps vs forward");

  f.arena.reset();
  std::vector<float> x1(B * T1 * D);
  for (int64_t b = 0; b < B; ++b) std::memcpy(&x1[b * T1 * D], &x[b * T * D], sizeof(float) * T1 * D);
  auto y1 = f.forward(x1, B, T1, false);
  std::vector<float> pre(B * T * D), want(B * T * D);
  for (int64_t b = 0; b < B; ++b) std::memcpy(&pre[b * T * D], &y1[b * T1 * D], sizeof(float) * T1 * D);
  for (int64_t t = T1; t < T; ++t) {
    f.arena.reset();
    for (int64_t b = 0; b < B; ++b) std::memcpy(&xt[b * D], &x[(b * T + t) * D], sizeof(float) * D);
    f.blk->step(f.ctx, yt.data(), xt.data(), B, nullptr);
    for (int64_t b = 0; b < B; ++b) std::memcpy(&pre[(b * T + t) * D], &yt[b * D], sizeof(float) * D);
  }
  expect_close(pre, steps, 1e-4, 0, "prefill+steps vs steps");
}

TEST(LayerMlp, GradientsMatchFiniteDifferences) {
  const int64_t D = 20, H = 36, T = 5;
  Fixture f(D, H, 4);
  f.randomize(40);
  st::GradCheck o;
  o.T = T;
  o.h = 1e-3f;
  st::check_layer_gradients(f, D, o);
}

TEST(LayerMlp, BackwardNeedsTrainingForward) {
  const int64_t D = 16, B = 2, T = 3;
  Fixture f(D, 32, 5);
  auto x = st::randn(B * T * D, 51);
  std::vector<float> dx(B * T * D), dy(B * T * D, 1.0f);
  EXPECT_THROW(f.blk->backward(f.ctx, dx.data(), dy.data(), B, T), Error);  // nothing ran
  f.forward(x, B, T, false);
  EXPECT_THROW(f.blk->backward(f.ctx, dx.data(), dy.data(), B, T), Error);  // inference forward only
  f.forward(x, B, T, true);
  EXPECT_THROW(f.blk->backward(f.ctx, dx.data(), dy.data(), B, T + 1), Error);  // other shape
  std::vector<float> ys(B * D);
  f.blk->step(f.ctx, ys.data(), x.data(), B, nullptr);  // a step in between leaves the saved state
  EXPECT_NO_THROW(f.blk->backward(f.ctx, dx.data(), dy.data(), B, T));
  EXPECT_THROW(f.blk->backward(f.ctx, dx.data(), dy.data(), B, T), Error);  // consumed
}
