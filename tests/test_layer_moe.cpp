// MoE block: parameter names/shapes/init, forward and aux loss against a naive per-token double
// reference, forward vs step parity, prefill-then-step, whole-layer gradients (aux loss included)
// against fp32 central finite differences with route-changing perturbations skipped, idle experts,
// and backward refusing to run without a training forward.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "core/error.h"
#include "layers/moe.h"
#include "testing.h"

using namespace strata;
namespace st = strata::testing;
using st::expect_close;

namespace {

const std::string kPrefix = "layers.3.moe";

struct Opts {
  int64_t D = 16, E = 5, k = 2, H = 12, S = 1;
  bool renorm = true;
  float aux = 0.1f;
};

struct Fixture {
  ModelConfig cfg;
  ParamStore store;
  std::unique_ptr<Block> blk;
  Arena arena;
  Ctx ctx;

  Fixture(const Opts& o, uint64_t seed) {
    cfg.d_model = int(o.D);
    cfg.pattern = "*E";
    cfg.repeat = 4;  // n_layers = 8
    cfg.init_std = 0.05f;
    cfg.moe.experts = int(o.E);
    cfg.moe.top_k = int(o.k);
    cfg.moe.hidden = int(o.H);
    cfg.moe.shared_experts = int(o.S);
    cfg.moe.renorm = o.renorm;
    cfg.moe.aux_loss = o.aux;
    resolve(cfg);
    blk = make_moe(cfg, store, kPrefix);
    store.allocate(seed);
    ctx.arena = &arena;
  }
  ParamRef ref(const std::string& sub) const {
    int i = store.find(kPrefix + "." + sub);
    EXPECT_GE(i, 0) << sub;
    return ParamRef{i};
  }
  float* p(const std::string& sub) { return store.data(ref(sub)); }
  // Experts at 1/sqrt(fan_in); the router larger so that routing margins dwarf the FD step.
  void randomize(uint64_t seed, float router_scale = 1.5f) {
    for (size_t i = 0; i < store.infos().size(); ++i) {
      const auto& in = store.infos()[i];
      const bool router = in.name == kPrefix + ".gate.weight";
      auto v = st::randn(size_t(in.numel), seed + i, (router ? router_scale : 1.0f) / std::sqrt(float(in.shape.back())));
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

struct Ref {
  std::vector<double> y;
  double aux = 0;
  std::vector<int32_t> idx;   // [N, k]
  std::vector<int> count;     // assignments per expert
  double min_margin = 1e300;  // smallest prob gap at the top-k boundary or inside the top-k order
};

// SwiGLU of one row in double. x[D], wg/wu[H, D], wd[D, H]; y[D] += scale * out.
void ref_swiglu(double* y, const float* x, const float* wg, const float* wu, const float* wd, int64_t D, int64_t H,
                double scale) {
  std::vector<double> a(H);
  for (int64_t h = 0; h < H; ++h) {
    double g = 0, u = 0;
    for (int64_t d = 0; d < D; ++d) g += double(wg[h * D + d]) * x[d], u += double(wu[h * D + d]) * x[d];
    a[h] = g / (1 + std::exp(-g)) * u;
  }
  for (int64_t d = 0; d < D; ++d) {
    double s = 0;
    for (int64_t h = 0; h < H; ++h) s += double(wd[d * H + h]) * a[h];
    y[d] += scale * s;
  }
}

// The block per token, naively, in double: router softmax, top-k (prob desc, index asc), gates,
// the chosen experts and the shared one; the aux loss from the same routing.
Ref ref_moe(Fixture& f, const std::vector<float>& x, int64_t N) {
  const auto& m = f.cfg.moe;
  const int64_t D = f.cfg.d_model, E = m.experts, k = m.top_k, H = m.hidden, Hs = int64_t(m.shared_experts) * H;
  const float* wr = f.p("gate.weight");
  Ref r;
  r.y.assign(N * D, 0.0);
  r.idx.resize(N * k);
  r.count.assign(E, 0);
  std::vector<double> P(E, 0.0), p(E);
  for (int64_t n = 0; n < N; ++n) {
    const float* xn = &x[n * D];
    double mx = -1e300, s = 0;
    for (int64_t e = 0; e < E; ++e) {
      double l = 0;
      for (int64_t d = 0; d < D; ++d) l += double(wr[e * D + d]) * xn[d];
      p[e] = l;
      mx = std::max(mx, l);
    }
    for (int64_t e = 0; e < E; ++e) s += (p[e] = std::exp(p[e] - mx));
    for (int64_t e = 0; e < E; ++e) p[e] /= s, P[e] += p[e];
    std::vector<int32_t> order(E);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return p[a] > p[b]; });
    for (int64_t j = 0; j < k && j + 1 < E; ++j) r.min_margin = std::min(r.min_margin, p[order[j]] - p[order[j + 1]]);
    double gs = 0;
    for (int64_t j = 0; j < k; ++j) gs += p[order[j]];
    for (int64_t j = 0; j < k; ++j) {
      const int e = order[j];
      r.idx[n * k + j] = e;
      ++r.count[e];
      const std::string ex = "experts." + std::to_string(e) + ".";
      ref_swiglu(&r.y[n * D], xn, f.p(ex + "gate_proj.weight"), f.p(ex + "up_proj.weight"),
                 f.p(ex + "down_proj.weight"), D, H, p[e] / (m.renorm ? gs : 1.0));
    }
    if (Hs > 0)
      ref_swiglu(&r.y[n * D], xn, f.p("shared_expert.gate_proj.weight"), f.p("shared_expert.up_proj.weight"),
                 f.p("shared_expert.down_proj.weight"), D, Hs, 1.0);
  }
  for (int64_t e = 0; e < E; ++e) r.aux += double(r.count[e]) / double(N * k) * P[e] / double(N);
  r.aux *= double(m.aux_loss) * double(E);
  return r;
}

std::vector<float> slice_tokens(const std::vector<float>& x, int64_t B, int64_t T, int64_t t0, int64_t t1, int64_t D) {
  std::vector<float> s(B * (t1 - t0) * D);
  for (int64_t b = 0; b < B; ++b)
    std::memcpy(&s[b * (t1 - t0) * D], &x[(b * T + t0) * D], sizeof(float) * (t1 - t0) * D);
  return s;
}

// Gradient check of loss = sum(w * y) + aux_loss() (w may be all zero: the aux loss alone).
// Perturbations of x and of the router that change any routing decision are skipped.
void check_gradients(const Opts& o, bool with_w, double atol, uint64_t seed) {
  std::printf("moe grads D=%ld E=%ld k=%ld H=%ld S=%ld renorm=%d aux=%g w=%d\n", long(o.D), long(o.E), long(o.k),
              long(o.H), long(o.S), int(o.renorm), o.aux, int(with_w));
  const int64_t B = 2, T = 7, N = B * T, D = o.D;
  Fixture f(o, seed);
  f.randomize(seed + 1);
  auto x = st::randn(N * D, seed + 2);
  auto w = with_w ? st::randn(N * D, seed + 3) : std::vector<float>(N * D, 0.0f);
  auto g0 = st::randn(size_t(f.store.numel()), seed + 4);
  std::memcpy(f.store.flat_grad(), g0.data(), sizeof(float) * g0.size());
  f.forward(x, B, T, true);
  std::vector<float> dx(N * D, 1e30f);
  f.blk->backward(f.ctx, dx.data(), w.data(), B, T);
  const Ref base = ref_moe(f, x, N);
  std::printf("  base routing min margin %.3e\n", base.min_margin);

  auto loss = [&] {
    f.arena.reset();
    auto y = f.forward(x, B, T, true);  // training: the aux loss is that of the last training forward
    double s = f.blk->aux_loss();
    for (int64_t i = 0; i < N * D; ++i) s += double(w[i]) * y[i];
    return s;
  };
  const float h = 1e-3f;
  int skipped = 0, tried = 0;
  // Returns false when the route at x +- h differs from the base (or is too close to call in fp32).
  auto fd = [&](float* v, int64_t i, bool may_reroute, double& out) {
    const float keep = v[i];
    v[i] = keep + h;
    const double lp = loss();
    const Ref rp = may_reroute ? ref_moe(f, x, N) : Ref{};
    v[i] = keep - h;
    const double lm = loss();
    const Ref rm = may_reroute ? ref_moe(f, x, N) : Ref{};
    v[i] = keep;
    ++tried;
    if (may_reroute && (rp.idx != base.idx || rm.idx != base.idx || rp.min_margin < 1e-5 || rm.min_margin < 1e-5)) {
      ++skipped;
      return false;
    }
    out = (lp - lm) / (2.0 * double(h));
    return true;
  };
  Rng pick(seed + 5);
  double gmax = 0;
  const std::string router = kPrefix + ".gate.weight";
  for (auto& in : f.store.infos()) {
    if (!with_w && in.name != router) {  // dy = 0: the experts' grads must stay exactly as they were
      int64_t changed = 0;
      for (int64_t j = 0; j < in.numel; ++j) changed += f.store.flat_grad()[in.offset + j] != g0[in.offset + j];
      EXPECT_EQ(changed, 0) << in.name;
      continue;
    }
    std::vector<double> got, want;
    for (int s = 0; s < 20; ++s) {
      const int64_t i = int64_t(pick.below(uint64_t(in.numel)));
      double v;
      if (!fd(f.store.flat() + in.offset, i, in.name == router, v)) continue;
      got.push_back(double(f.store.flat_grad()[in.offset + i]) - double(g0[in.offset + i]));
      want.push_back(v);
      gmax = std::max(gmax, std::abs(v));
    }
    expect_close(got, want, atol, 2e-2, in.name);
  }
  std::vector<double> got, want;
  double dxmax = 0;
  for (int s = 0; s < 20; ++s) {
    const int64_t i = int64_t(pick.below(uint64_t(N * D)));
    double v;
    if (!fd(x.data(), i, true, v)) continue;
    got.push_back(dx[i]);
    want.push_back(v);
    dxmax = std::max(dxmax, std::abs(v));
  }
  expect_close(got, want, atol, 2e-2, "dx");
  std::printf("  skipped %d of %d perturbations (route changed); max |FD grad| params %.3g, dx %.3g\n", skipped,
              tried, gmax, dxmax);
  EXPECT_LT(skipped, tried / 5);
  EXPECT_GT(dxmax, 20 * atol) << "dx too small for the FD tolerance to mean anything";
}

}  // namespace

TEST(LayerMoe, ParametersAndInit) {
  Opts o;
  o.D = 32, o.E = 4, o.H = 48, o.S = 2;
  Fixture f(o, 1);
  std::vector<std::pair<std::string, Shape>> want = {{"gate.weight", {4, 32}}};
  for (int e = 0; e < 4; ++e) {
    const std::string p = "experts." + std::to_string(e) + ".";
    want.push_back({p + "gate_proj.weight", {48, 32}});
    want.push_back({p + "up_proj.weight", {48, 32}});
    want.push_back({p + "down_proj.weight", {32, 48}});
  }
  want.push_back({"shared_expert.gate_proj.weight", {96, 32}});
  want.push_back({"shared_expert.up_proj.weight", {96, 32}});
  want.push_back({"shared_expert.down_proj.weight", {32, 96}});
  ASSERT_EQ(f.store.infos().size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    const auto& in = f.store.infos()[i];
    EXPECT_EQ(in.name, kPrefix + "." + want[i].first);
    EXPECT_EQ(in.shape, want[i].second) << in.name;
    EXPECT_TRUE(in.decay) << in.name;
  }
  // Init: normal(init_std), down projections normal(init_std / sqrt(2 n_layers)), n_layers = 8.
  auto sd = [&](const std::string& sub) {
    const auto& in = f.store.info(f.ref(sub));
    const float* v = f.store.data(f.ref(sub));
    double ss = 0;
    for (int64_t j = 0; j < in.numel; ++j) ss += double(v[j]) * v[j];
    return std::sqrt(ss / double(in.numel));
  };
  EXPECT_NEAR(sd("gate.weight"), 0.05, 0.015);  // only 128 values
  EXPECT_NEAR(sd("shared_expert.up_proj.weight"), 0.05, 0.005);
  EXPECT_NEAR(sd("experts.2.gate_proj.weight"), 0.05, 0.005);
  EXPECT_NEAR(sd("shared_expert.down_proj.weight"), 0.0125, 0.00125);
  EXPECT_NEAR(sd("experts.3.down_proj.weight"), 0.0125, 0.00125);

  Opts o0 = o;
  o0.S = 0;
  Fixture g(o0, 1);
  EXPECT_EQ(g.store.infos().size(), 13u);  // no shared expert
  EXPECT_EQ(g.store.find(kPrefix + ".shared_expert.gate_proj.weight"), -1);

  EXPECT_EQ(f.blk->kind(), "moe");
  const double want_flops = 2.0 * 32 * 4 + 2 * (6.0 * 32 * 48 + 2.0 * 32) + 6.0 * 32 * 96 + 32;
  EXPECT_DOUBLE_EQ(f.blk->flops_per_token(64), want_flops);
  EXPECT_EQ(f.blk->allocate_cache(2, 16), nullptr);
  EXPECT_EQ(f.blk->cache_bytes_per_token(), 0);
  EXPECT_EQ(f.blk->cache_bytes_fixed(), 0);

  ParamStore s;
  ModelConfig c = f.cfg;
  c.moe.top_k = 5;
  EXPECT_THROW(make_moe(c, s, "x"), Error);
}

TEST(LayerMoe, ForwardAndAuxMatchDoubleReference) {
  Opts cases[4];
  cases[1].k = 1, cases[1].renorm = false, cases[1].S = 0;
  cases[2].k = 3, cases[2].E = 6, cases[2].S = 2, cases[2].renorm = false;
  cases[3].E = 8, cases[3].k = 1;  // 6 tokens, 8 experts: some expert is idle
  int64_t tokens[4][2] = {{3, 5}, {2, 9}, {1, 11}, {2, 3}};
  for (int c = 0; c < 4; ++c) {
    const Opts& o = cases[c];
    const int64_t B = tokens[c][0], T = tokens[c][1], N = B * T;
    std::printf("moe fwd E=%ld k=%ld S=%ld renorm=%d N=%ld\n", long(o.E), long(o.k), long(o.S), int(o.renorm),
                long(N));
    Fixture f(o, 10 + c);
    f.randomize(20 + c);
    auto x = st::randn(N * o.D, 30 + c);
    auto y = f.forward(x, B, T, true);
    Ref r = ref_moe(f, x, N);
    expect_close(y, r.y, 1e-5, 1e-4, "y vs double ref");
    expect_close(std::vector<double>{f.blk->aux_loss()}, std::vector<double>{r.aux}, 1e-9, 1e-5, "aux_loss");
    if (c == 3) {
      EXPECT_NE(std::find(r.count.begin(), r.count.end(), 0), r.count.end()) << "no idle expert";
    }
    // An inference forward gives the same y and leaves the aux loss of the training forward.
    f.arena.reset();
    const double aux = f.blk->aux_loss();
    auto xi = st::randn(N * o.D, 99);
    f.forward(xi, B, T, false);
    EXPECT_EQ(f.blk->aux_loss(), aux);
  }
}

TEST(LayerMoe, StepParityAndPrefill) {
  Opts o;  // E = 5, k = 2, shared expert
  const int64_t B = 2, T = 13, T1 = 5, D = o.D;
  Fixture f(o, 40);
  f.randomize(41);
  auto x = st::randn(B * T * D, 42);
  auto y = f.forward(x, B, T, false);
  EXPECT_EQ(f.blk->allocate_cache(B, T), nullptr);  // stateless: no cache to fill or compare
  std::vector<float> steps(B * T * D), yt(B * D);
  for (int64_t t = 0; t < T; ++t) {
    f.arena.reset();
    auto xt = slice_tokens(x, B, T, t, t + 1, D);
    f.blk->step(f.ctx, yt.data(), xt.data(), B, nullptr);
    for (int64_t b = 0; b < B; ++b) std::memcpy(&steps[(b * T + t) * D], &yt[b * D], sizeof(float) * D);
  }
  expect_close(steps, y, 1e-4, 0, "steps vs forward");

  f.arena.reset();
  auto y1 = f.forward(slice_tokens(x, B, T, 0, T1, D), B, T1, false);
  std::vector<float> pre(B * T * D);
  for (int64_t b = 0; b < B; ++b) std::memcpy(&pre[b * T * D], &y1[b * T1 * D], sizeof(float) * T1 * D);
  for (int64_t t = T1; t < T; ++t) {
    f.arena.reset();
    auto xt = slice_tokens(x, B, T, t, t + 1, D);
    f.blk->step(f.ctx, yt.data(), xt.data(), B, nullptr);
    for (int64_t b = 0; b < B; ++b) std::memcpy(&pre[(b * T + t) * D], &yt[b * D], sizeof(float) * D);
  }
  expect_close(pre, steps, 1e-4, 0, "prefill+steps vs steps");
}

TEST(LayerMoe, GradientsMatchFiniteDifferences) {
  Opts a;  // top-2 of 5, renorm, shared expert, aux 0.1
  check_gradients(a, true, 2e-3, 100);
  Opts b;
  b.k = 1, b.renorm = false, b.S = 0, b.E = 4;
  check_gradients(b, true, 2e-3, 200);
  Opts c;
  c.k = 3, c.E = 6, c.S = 2, c.renorm = false, c.aux = 0.5f;
  check_gradients(c, true, 2e-3, 300);
}

TEST(LayerMoe, AuxLossGradientAlone) {
  // dy = 0: the only gradient is the aux loss's, through the router (experts get none).
  Opts o;
  o.aux = 1.0f;
  check_gradients(o, false, 1e-4, 400);
}

TEST(LayerMoe, IdleExpertsGetNoGradient) {
  Opts o;
  o.E = 8, o.k = 1, o.S = 0;
  Fixture f(o, 50);
  f.randomize(51);
  const int64_t B = 2, T = 3, N = B * T;
  auto x = st::randn(N * o.D, 52), dy = st::randn(N * o.D, 53);
  auto g0 = st::randn(size_t(f.store.numel()), 54);
  std::memcpy(f.store.flat_grad(), g0.data(), sizeof(float) * g0.size());
  f.forward(x, B, T, true);
  std::vector<float> dx(N * o.D);
  f.blk->backward(f.ctx, dx.data(), dy.data(), B, T);
  Ref r = ref_moe(f, x, N);
  int idle = 0;
  for (int e = 0; e < o.E; ++e) {
    const std::string p = "experts." + std::to_string(e) + ".";
    for (const char* m : {"gate_proj.weight", "up_proj.weight", "down_proj.weight"}) {
      const auto& in = f.store.info(f.ref(p + m));
      int64_t changed = 0;
      for (int64_t j = 0; j < in.numel; ++j) changed += f.store.flat_grad()[in.offset + j] != g0[in.offset + j];
      if (r.count[e] == 0) {
        EXPECT_EQ(changed, 0) << p << m;
      } else {
        EXPECT_GT(changed, 0) << p << m;
      }
    }
    idle += r.count[e] == 0;
  }
  EXPECT_GE(idle, 2);
}

TEST(LayerMoe, BackwardNeedsTrainingForward) {
  Opts o;
  Fixture f(o, 60);
  const int64_t B = 2, T = 3, N = B * T;
  auto x = st::randn(N * o.D, 61);
  std::vector<float> dx(N * o.D), dy(N * o.D, 1.0f), ys(B * o.D);
  EXPECT_THROW(f.blk->backward(f.ctx, dx.data(), dy.data(), B, T), Error);  // nothing ran
  f.forward(x, B, T, false);
  EXPECT_THROW(f.blk->backward(f.ctx, dx.data(), dy.data(), B, T), Error);  // inference forward only
  f.forward(x, B, T, true);
  EXPECT_THROW(f.blk->backward(f.ctx, dx.data(), dy.data(), 1, T), Error);  // other shape
  f.blk->step(f.ctx, ys.data(), x.data(), B, nullptr);  // a step in between leaves the saved state
  EXPECT_NO_THROW(f.blk->backward(f.ctx, dx.data(), dy.data(), B, T));
  EXPECT_THROW(f.blk->backward(f.ctx, dx.data(), dy.data(), B, T), Error);  // consumed
}
