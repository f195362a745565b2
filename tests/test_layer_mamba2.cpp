// Mamba-2 block: parameter names/shapes/init, forward against a double reference of the whole mixer
// (recurrent SSD, grouped gated norm), forward vs step parity, prefill-then-step (outputs and cache
// state), whole-layer gradients against fp32 central finite differences, and backward refusing to
// run without a training forward.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "layers/mamba2.h"
#include "layer_gradcheck.h"
#include "testing.h"

using namespace strata;
namespace st = strata::testing;
using st::expect_close;

namespace {

const char* kPrefix = "layers.2.mixer";

struct Dims {
  int D, P, G, N, K, chunk;
  bool bias = false, conv_bias = true;
};

struct Fixture {
  ModelConfig cfg;
  ParamStore store;
  std::unique_ptr<Block> blk;
  Arena arena;
  Ctx ctx;

  // d_inner = 2 D, H = d_inner / P.
  Fixture(const Dims& d, uint64_t seed) {
    cfg.d_model = d.D;
    cfg.pattern = "M*M-";
    cfg.repeat = 2;  // n_layers = 8
    cfg.mamba.version = 2;
    cfg.mamba.d_state = d.N;
    cfg.mamba.d_conv = d.K;
    cfg.mamba.expand = 2;
    cfg.mamba.head_dim = d.P;
    cfg.mamba.ngroups = d.G;
    cfg.mamba.chunk = d.chunk;
    cfg.mamba.bias = d.bias;
    cfg.mamba.conv_bias = d.conv_bias;
    resolve(cfg);
    blk = make_mamba2(cfg, store, kPrefix);
    store.allocate(seed);
    ctx.arena = &arena;
  }
  int64_t Di() const { return int64_t(cfg.mamba.expand) * cfg.d_model; }
  int64_t H() const { return Di() / cfg.mamba.head_dim; }
  int64_t conv_dim() const { return Di() + 2 * cfg.mamba.ngroups * cfg.mamba.d_state; }
  const ParamInfo* info(const std::string& sub) const {
    const int i = store.find(std::string(kPrefix) + "." + sub);
    return i < 0 ? nullptr : &store.infos()[size_t(i)];
  }
  float* p(const std::string& sub) {
    const int i = store.find(std::string(kPrefix) + "." + sub);
    return i < 0 ? nullptr : store.data(ParamRef{i});
  }
  // Matrices ~ 1/sqrt(fan_in) so outputs and gradients are O(0.1..1), well above the FD noise; the SSM
  // parameters near meaningful values (dt ~ 0.05..0.7, A in -[1, 4]) so that the state carries
  // information across chunks.
  void randomize(uint64_t seed) {
    for (size_t i = 0; i < store.infos().size(); ++i) {
      const auto& in = store.infos()[i];
      const std::string sub = in.name.substr(std::string(kPrefix).size() + 1);
      std::vector<float> v;
      if (sub == "A_log") {
        v = st::uniform(size_t(in.numel), seed + i, 0.0f, 1.4f);
      } else if (sub == "D" || sub == "norm.weight") {
        v = st::uniform(size_t(in.numel), seed + i, 0.5f, 1.5f);
      } else if (sub == "dt_bias") {
        v = st::uniform(size_t(in.numel), seed + i, -3.0f, 0.0f);
      } else if (in.shape.size() == 1) {
        v = st::randn(size_t(in.numel), seed + i, 0.2f);
      } else {
        v = st::randn(size_t(in.numel), seed + i, 1.0f / std::sqrt(float(in.shape.back())));
      }
      std::memcpy(store.flat() + in.offset, v.data(), sizeof(float) * v.size());
    }
  }
  std::vector<float> forward(const std::vector<float>& x, int64_t B, int64_t T, bool training,
                             BlockCache* cache = nullptr) {
    std::vector<float> y(size_t(B * T * cfg.d_model), 1e30f);
    ctx.training = training;
    blk->forward(ctx, y.data(), x.data(), B, T, cache);
    return y;
  }
  // Steps over tokens [t0, t1) of x[B, T, D], writing into y[B, T, D]; the arena is reset per token.
  void steps(std::vector<float>& y, const std::vector<float>& x, int64_t B, int64_t T, int64_t t0, int64_t t1,
             BlockCache* cache) {
    const int64_t D = cfg.d_model;
    std::vector<float> xt(B * D), yt(B * D);
    for (int64_t t = t0; t < t1; ++t) {
      arena.reset();
      for (int64_t b = 0; b < B; ++b) std::memcpy(&xt[b * D], &x[(b * T + t) * D], sizeof(float) * D);
      blk->step(ctx, yt.data(), xt.data(), B, cache);
      for (int64_t b = 0; b < B; ++b) std::memcpy(&y[(b * T + t) * D], &yt[b * D], sizeof(float) * D);
    }
  }
};

// The whole mixer in double, straight from mamba2.py with the recurrent SSD.   x[B, T, D] -> y[B, T, D]
std::vector<double> ref_mamba2(Fixture& f, const std::vector<float>& x, int64_t B, int64_t T) {
  const int64_t D = f.cfg.d_model, Di = f.Di(), H = f.H(), P = f.cfg.mamba.head_dim, G = f.cfg.mamba.ngroups,
                N = f.cfg.mamba.d_state, K = f.cfg.mamba.d_conv, Cd = f.conv_dim(), n_in = Di + Cd + H;
  const float *win = f.p("in_proj.weight"), *bin = f.p("in_proj.bias"), *cw = f.p("conv1d.weight"),
              *cb = f.p("conv1d.bias"), *dtb = f.p("dt_bias"), *alog = f.p("A_log"), *Dsk = f.p("D"),
              *nw = f.p("norm.weight"), *wout = f.p("out_proj.weight"), *bout = f.p("out_proj.bias");
  const int64_t NT = B * T;
  std::vector<double> zx(NT * n_in), xc(NT * Cd), ys(NT * Di), y(NT * D, 0.0);
  for (int64_t n = 0; n < NT; ++n)
    for (int64_t o = 0; o < n_in; ++o) {
      double acc = bin ? bin[o] : 0.0;
      for (int64_t d = 0; d < D; ++d) acc += double(win[o * D + d]) * x[n * D + d];
      zx[n * n_in + o] = acc;
    }
  // zx row: z [0, Di), xBC [Di, Di + Cd), dt [Di + Cd, n_in).
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t c = 0; c < Cd; ++c) {
        double acc = cb ? cb[c] : 0.0;
        for (int64_t j = 0; j < K; ++j) {
          const int64_t s = t - (K - 1) + j;
          if (s >= 0) acc += double(cw[c * K + j]) * zx[(b * T + s) * n_in + Di + c];
        }
        xc[(b * T + t) * Cd + c] = acc / (1 + std::exp(-acc));
      }
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / (H / G);
      std::vector<double> S(P * N, 0.0);
      for (int64_t t = 0; t < T; ++t) {
        const int64_t n = b * T + t;
        const double u = zx[n * n_in + Di + Cd + h] + dtb[h];
        const double dt = u > 20 ? u : std::log1p(std::exp(u));
        const double a = std::exp(-dt * std::exp(double(alog[h])));
        const double* xr = &xc[n * Cd];
        for (int64_t p = 0; p < P; ++p) {
          const double xv = xr[h * P + p];
          double acc = 0;
          for (int64_t s = 0; s < N; ++s) {
            double& st_ = S[p * N + s];
            st_ = a * st_ + dt * xv * xr[Di + g * N + s];
            acc += st_ * xr[Di + G * N + g * N + s];
          }
          ys[n * Di + h * P + p] = acc + double(Dsk[h]) * xv;
        }
      }
    }
  // Gated RMSNorm over groups of Di / G channels, then out_proj.
  const int64_t gs = Di / G;
  std::vector<double> gt(Di);
  for (int64_t n = 0; n < NT; ++n) {
    for (int64_t c = 0; c < Di; ++c) {
      const double zz = zx[n * n_in + c];
      gt[c] = ys[n * Di + c] * zz / (1 + std::exp(-zz));
    }
    for (int64_t k = 0; k < G; ++k) {
      double ss = 0;
      for (int64_t c = k * gs; c < (k + 1) * gs; ++c) ss += gt[c] * gt[c];
      const double r = 1.0 / std::sqrt(ss / double(gs) + double(f.cfg.norm_eps));
      for (int64_t c = k * gs; c < (k + 1) * gs; ++c) gt[c] *= r * double(nw[c]);
    }
    for (int64_t o = 0; o < D; ++o) {
      double acc = bout ? bout[o] : 0.0;
      for (int64_t c = 0; c < Di; ++c) acc += double(wout[o * Di + c]) * gt[c];
      y[n * D + o] = acc;
    }
  }
  return y;
}

double sample_std(const float* v, int64_t n) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += double(v[i]) * double(v[i]);
  return std::sqrt(ss / double(n));
}

}  // namespace

TEST(LayerMamba2, ParametersAndInit) {
  Dims dd{64, 16, 2, 16, 4, 32};
  dd.bias = true;
  Fixture f(dd, 1);
  const int64_t D = 64, Di = 128, H = 8, P = 16, G = 2, N = 16, K = 4, Cd = Di + 2 * G * N;
  struct Want {
    const char* sub;
    Shape shape;
    bool decay;
  };
  const Want want[] = {{"in_proj.weight", {2 * Di + 2 * G * N + H, D}, true},
                       {"in_proj.bias", {2 * Di + 2 * G * N + H}, false},
                       {"conv1d.weight", {Cd, 1, K}, true},
                       {"conv1d.bias", {Cd}, false},
                       {"dt_bias", {H}, false},
                       {"A_log", {H}, false},
                       {"D", {H}, false},
                       {"norm.weight", {Di}, false},
                       {"out_proj.weight", {D, Di}, true},
                       {"out_proj.bias", {D}, false}};
  ASSERT_EQ(f.store.infos().size(), std::size(want));
  for (auto& w : want) {
    const ParamInfo* in = f.info(w.sub);
    ASSERT_NE(in, nullptr) << w.sub;
    EXPECT_EQ(in->shape, w.shape) << w.sub;
    EXPECT_EQ(in->decay, w.decay) << w.sub;
  }
  // PyTorch default init U(+-1/sqrt(fan_in)) has std 1/sqrt(3 fan_in); out_proj is further divided by
  // sqrt(n_layers = 8). Sample stds of >= 8k draws are within a few % of the true ones.
  auto check_std = [&](const char* sub, double want_std) {
    const ParamInfo* in = f.info(sub);
    const double sd = sample_std(f.p(sub), in->numel);
    std::printf("  %-16s std=%.4f want %.4f\n", sub, sd, want_std);
    EXPECT_NEAR(sd, want_std, 0.1 * want_std) << sub;
  };
  check_std("in_proj.weight", 1.0 / std::sqrt(3.0 * D));
  check_std("out_proj.weight", 1.0 / std::sqrt(3.0 * Di) / std::sqrt(8.0));
  for (int64_t i = 0; i < Cd * K; ++i) EXPECT_LE(std::abs(f.p("conv1d.weight")[i]), 0.5f + 1e-6f);
  for (int64_t i = 0; i < 2 * Di + 2 * G * N + H; ++i) EXPECT_EQ(f.p("in_proj.bias")[i], 0.0f);
  for (int64_t i = 0; i < D; ++i) EXPECT_EQ(f.p("out_proj.bias")[i], 0.0f);
  for (int64_t c = 0; c < Di; ++c) EXPECT_EQ(f.p("norm.weight")[c], 1.0f);
  for (int64_t h = 0; h < H; ++h) {
    EXPECT_EQ(f.p("D")[h], 1.0f);
    // A = exp(A_log) drawn from U(1, 16).
    EXPECT_GE(f.p("A_log")[h], 0.0f);
    EXPECT_LE(f.p("A_log")[h], float(std::log(16.0)) + 1e-6f);
    // softplus(dt_bias) is the initial dt: log-uniform in [dt_min, dt_max].
    const double dt = std::log1p(std::exp(double(f.p("dt_bias")[h])));
    EXPECT_GE(dt, 0.001 * 0.999);
    EXPECT_LE(dt, 0.1 * 1.001);
  }
  EXPECT_EQ(f.blk->kind(), "mamba2");
  EXPECT_EQ(f.blk->cache_bytes_per_token(), 0);
  EXPECT_EQ(f.blk->cache_bytes_fixed(), int64_t(4 * (Cd * (K - 1) + H * P * N)));
  auto c = f.blk->allocate_cache(3, 100);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->bytes(), 3 * f.blk->cache_bytes_fixed());
  // Projections + conv dominate at T = 1; the chunked SSD adds ~min(T, chunk)/2 per state/channel.
  const double proj = 2.0 * (double(D) * (Di + Cd + H) + double(Di) * D + double(Cd) * K);
  EXPECT_GT(f.blk->flops_per_token(1), proj);
  EXPECT_GT(f.blk->flops_per_token(32), f.blk->flops_per_token(8));
  EXPECT_DOUBLE_EQ(f.blk->flops_per_token(1000), f.blk->flops_per_token(32));  // capped at the chunk

  // Without the optional biases they are not declared.
  Dims d2{32, 8, 1, 8, 3, 16};
  d2.conv_bias = false;
  Fixture g(d2, 2);
  EXPECT_EQ(g.info("in_proj.bias"), nullptr);
  EXPECT_EQ(g.info("out_proj.bias"), nullptr);
  EXPECT_EQ(g.info("conv1d.bias"), nullptr);
  EXPECT_EQ(g.store.infos().size(), 7u);

  // Impossible shapes are refused with the key named.
  ModelConfig bad = f.cfg;
  bad.mamba.head_dim = 48;  // does not divide d_inner = 128
  ParamStore s;
  EXPECT_THROW(make_mamba2(bad, s, "layers.0.mixer"), Error);
  bad.mamba.head_dim = 16;
  bad.mamba.ngroups = 3;  // does not divide H = 8
  EXPECT_THROW(make_mamba2(bad, s, "layers.0.mixer"), Error);
}

TEST(LayerMamba2, ForwardMatchesDoubleReference) {
  // G = 1 and 2 (group-shared B/C and a per-group norm), with and without the optional biases; T not
  // a multiple of the chunk.
  for (int G : {1, 2}) {
    Dims d{16, 8, G, 6, 4, 8};
    d.bias = G == 2;
    d.conv_bias = G == 1;
    Fixture f(d, 3);
    f.randomize(30);
    const int64_t B = 2, T = 21, D = 16;
    auto x = st::randn(B * T * D, 31);
    auto y = f.forward(x, B, T, false);
    expect_close(y, ref_mamba2(f, x, B, T), 1e-5, 1e-4, G == 1 ? "y vs double ref (G=1)" : "y vs double ref (G=2)");
    f.arena.reset();
    auto yt = f.forward(x, B, T, true);  // the training path computes the same values
    expect_close(yt, y, 0, 0, "training forward == inference forward");
  }
}

TEST(LayerMamba2, StepParityAndPrefill) {
  // T = 37 over chunks of 16 (ragged last chunk), B = 2, G = 2.
  Dims d{24, 8, 2, 12, 4, 16};
  Fixture f(d, 4);
  f.randomize(40);
  const int64_t B = 2, T = 37, T1 = 21, D = 24, Cd = f.conv_dim(), H = f.H();
  auto x = st::randn(B * T * D, 41);
  auto y = f.forward(x, B, T, false);

  // (a) T steps from an empty cache vs the forward over T.
  auto c_steps = f.blk->allocate_cache(B, T);
  std::vector<float> ys(B * T * D);
  f.steps(ys, x, B, T, 0, T, c_steps.get());
  EXPECT_EQ(c_steps->pos, T);
  expect_close(ys, y, 1e-4, 0, "steps vs forward");

  // (b) forward over x[:, :T1] with a cache (T1 past one chunk), then steps for the rest, vs steps
  // from scratch.
  f.arena.reset();
  std::vector<float> x1(B * T1 * D);
  for (int64_t b = 0; b < B; ++b) std::memcpy(&x1[b * T1 * D], &x[b * T * D], sizeof(float) * T1 * D);
  auto c_pre = f.blk->allocate_cache(B, T);
  auto y1 = f.forward(x1, B, T1, false, c_pre.get());
  EXPECT_EQ(c_pre->pos, T1);
  std::vector<float> yp(B * T * D);
  for (int64_t b = 0; b < B; ++b) std::memcpy(&yp[b * T * D], &y1[b * T1 * D], sizeof(float) * T1 * D);
  auto c_ref = f.blk->allocate_cache(B, T);
  std::vector<float> yr(B * T * D);
  f.steps(yr, x, B, T, 0, T1, c_ref.get());
  auto& pre = dynamic_cast<Mamba2Cache&>(*c_pre);
  auto& ref = dynamic_cast<Mamba2Cache&>(*c_ref);
  ASSERT_EQ(pre.conv.size(), size_t(B * Cd * 3));
  ASSERT_EQ(pre.ssm.size(), size_t(B * H * 8 * 12));
  expect_close(pre.conv.to_host(), ref.conv.to_host(), 1e-6, 0, "prefill conv_state vs steps");
  expect_close(pre.ssm.to_host(), ref.ssm.to_host(), 1e-4, 0, "prefill ssm_state vs steps");
  double smax = 0;
  for (float v : ref.ssm.to_host()) smax = std::max(smax, double(std::abs(v)));
  EXPECT_GT(smax, 0.1) << "the SSM state carries too little for the comparison to mean anything";
  f.steps(yp, x, B, T, T1, T, c_pre.get());
  expect_close(yp, ys, 1e-4, 0, "prefill+steps vs steps");
  auto& fin = dynamic_cast<Mamba2Cache&>(*c_steps);
  expect_close(pre.conv.to_host(), fin.conv.to_host(), 1e-6, 0, "final conv_state vs steps");
  expect_close(pre.ssm.to_host(), fin.ssm.to_host(), 1e-4, 0, "final ssm_state vs steps");
  EXPECT_EQ(c_pre->pos, T);
}

TEST(LayerMamba2, GradientsMatchFiniteDifferences) {
  // T = 19 over chunks of 8 (three chunks, ragged), G = 2, all optional biases.
  const int64_t D = 12, T = 19;
  Dims d{int(D), 4, 2, 4, 3, 8};
  d.bias = true;
  Fixture f(d, 5);
  f.randomize(50);
  st::GradCheck o;
  o.T = T;
  o.seed = 50;
  // Fourth-order central difference with h = 5e-3: the fp32 rounding noise of the loss (every
  // output moves when an upstream parameter does) is ~5x below that of the two-point formula at
  // h = 1e-3, and the truncation error stays O(h^4). The two-point one sits at the tolerance here.
  o.five_point = true;
  o.h = 5e-3f;
  o.min_param_grad = 1e-2;
  st::check_layer_gradients(f, D, o);
}

TEST(LayerMamba2, BackwardNeedsTrainingForward) {
  const int64_t D = 16, B = 2, T = 3;
  Fixture f(Dims{int(D), 8, 1, 4, 4, 8}, 6);
  auto x = st::randn(B * T * D, 61);
  std::vector<float> dx(B * T * D), dy(B * T * D, 1.0f);
  EXPECT_THROW(f.blk->backward(f.ctx, dx.data(), dy.data(), B, T), Error);  // nothing ran
  f.forward(x, B, T, false);
  EXPECT_THROW(f.blk->backward(f.ctx, dx.data(), dy.data(), B, T), Error);  // inference forward only
  f.forward(x, B, T, true);
  EXPECT_THROW(f.blk->backward(f.ctx, dx.data(), dy.data(), B, T + 1), Error);  // other shape
  auto c = f.blk->allocate_cache(B, 8);
  std::vector<float> ys(B * D);
  f.blk->step(f.ctx, ys.data(), x.data(), B, c.get());  // a step in between leaves the saved state
  EXPECT_NO_THROW(f.blk->backward(f.ctx, dx.data(), dy.data(), B, T));
  EXPECT_THROW(f.blk->backward(f.ctx, dx.data(), dy.data(), B, T), Error);  // consumed
  // Caches: prefill needs an empty one of the right batch; step needs one.
  EXPECT_THROW(f.blk->step(f.ctx, ys.data(), x.data(), B, nullptr), Error);
  EXPECT_THROW(f.forward(x, B, T, false, c.get()), Error);  // pos = 1
  auto c1 = f.blk->allocate_cache(B + 1, 8);
  EXPECT_THROW(f.forward(x, B, T, false, c1.get()), Error);  // wrong batch
}
