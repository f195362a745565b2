// Attention block: parameter names/shapes/init, forward against a double reference (projections,
// RoPE, causal softmax, output projection), forward vs step parity, prefill-then-step (outputs and
// cache), whole-layer gradients against fp32 central finite differences, and the refusals (backward
// without a training forward, a full cache, a non-empty cache for prefill, a foreign cache). The RoPE
// options (none, partial rotary dims, linear and llama3 frequencies) get the reference, parity and
// gradient checks too; tests/test_hf_layers.cpp compares them with transformers.
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "layers/attention.h"
#include "layers/rope_freq.h"
#include "layer_gradcheck.h"
#include "testing.h"

using namespace strata;
namespace st = strata::testing;
using st::expect_close;

namespace {

const char* kPrefix = "layers.2.self_attn";

struct Shape4 {
  int D, Hq, Hkv, hd;
};

// attention.rope / rope_dims / rope_type / rope_factor / rope_original_max_positions (llama3's
// low/high frequency factors keep their defaults, 1 and 4).
struct RopeOpt {
  const char* name = "rope default";
  bool rope = true;
  int dims = 0;  // 0 = head_dim
  const char* type = "default";
  float factor = 1.0f;
  int original_max = 8192;
};

struct Fixture {
  ModelConfig cfg;
  ParamStore store;
  std::unique_ptr<Block> blk;
  Arena arena;
  Ctx ctx;

  Fixture(Shape4 s, uint64_t seed, float theta = 10000.0f, const RopeOpt& r = {}) {
    cfg.d_model = s.D;
    cfg.attention.heads = s.Hq;
    cfg.attention.kv_heads = s.Hkv;
    cfg.attention.head_dim = s.hd;
    cfg.attention.rope_theta = theta;
    cfg.attention.rope = r.rope;
    cfg.attention.rope_dims = r.dims;
    cfg.attention.rope_type = r.type;
    cfg.attention.rope_factor = r.factor;
    cfg.attention.rope_original_max_positions = r.original_max;
    cfg.pattern = "M*-*";
    cfg.repeat = 2;  // n_layers = 8
    cfg.init_std = 0.05f;
    resolve(cfg);
    blk = make_attention(cfg, store, kPrefix);
    store.allocate(seed);
    ctx.arena = &arena;
  }
  const float* p(const std::string& sub) {
    return store.data(ParamRef{store.find(std::string(kPrefix) + "." + sub)});
  }
  // Weights of order 1/sqrt(fan_in), so that scores, outputs and gradients are O(0.1..1).
  void randomize(uint64_t seed) {
    for (size_t i = 0; i < store.infos().size(); ++i) {
      const auto& in = store.infos()[i];
      auto v = st::randn(size_t(in.numel), seed + i, 1.0f / std::sqrt(float(in.shape.back())));
      std::memcpy(store.flat() + in.offset, v.data(), sizeof(float) * v.size());
    }
  }
  int64_t D() const { return cfg.d_model; }
  std::vector<float> forward(const std::vector<float>& x, int64_t B, int64_t T, bool training,
                             BlockCache* cache = nullptr) {
    std::vector<float> y(size_t(B * T * D()), 1e30f);
    ctx.training = training;
    blk->forward(ctx, y.data(), x.data(), B, T, cache);
    return y;
  }
  // Tokens [t0, t1) of x[B, T, D], one step each; returns their outputs as [B, t1 - t0, D].
  std::vector<float> steps(const std::vector<float>& x, int64_t B, int64_t T, int64_t t0, int64_t t1, BlockCache* c) {
    const int64_t n = t1 - t0;
    std::vector<float> out(size_t(B * n * D())), xt(size_t(B * D())), yt(size_t(B * D()));
    for (int64_t t = t0; t < t1; ++t) {
      arena.reset();
      for (int64_t b = 0; b < B; ++b) std::memcpy(&xt[b * D()], &x[(b * T + t) * D()], sizeof(float) * D());
      blk->step(ctx, yt.data(), xt.data(), B, c);
      for (int64_t b = 0; b < B; ++b)
        std::memcpy(&out[(b * n + t - t0) * D()], &yt[b * D()], sizeof(float) * D());
    }
    return out;
  }
};

// The whole block in double. x[B, T, D] -> y[B, T, D].
std::vector<double> ref_attention_layer(Fixture& f, const std::vector<float>& x, int64_t B, int64_t T) {
  const int64_t D = f.D(), Hq = f.cfg.attention.heads, Hkv = f.cfg.attention.kv_heads, hd = f.cfg.attention.head_dim;
  // RoPE on the first `rot` channels of a head, pairs (i, i + rot/2), with the config's frequencies.
  const int64_t rot = f.cfg.attention.rope ? f.cfg.attention.rope_dims : 0;
  const std::vector<float> inv_freq = rope_inv_freq(f.cfg.attention, rot);
  const float *wq = f.p("q_proj.weight"), *wk = f.p("k_proj.weight"), *wv = f.p("v_proj.weight"),
              *wo = f.p("o_proj.weight");
  auto proj = [&](const float* w, int64_t OC) {
    std::vector<double> out(B * T * OC, 0.0);
    for (int64_t n = 0; n < B * T; ++n)
      for (int64_t o = 0; o < OC; ++o)
        for (int64_t d = 0; d < D; ++d) out[n * OC + o] += double(w[o * D + d]) * x[n * D + d];
    return out;
  };
  auto q = proj(wq, Hq * hd), k = proj(wk, Hkv * hd), v = proj(wv, Hkv * hd);
  auto rope = [&](std::vector<double>& z, int64_t H) {
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t h = 0; h < H; ++h) {
          double* r = &z[((b * T + t) * H + h) * hd];
          for (int64_t i = 0; i < rot / 2; ++i) {
            const double a = double(t) * double(inv_freq[size_t(i)]);
            const double x1 = r[i], x2 = r[i + rot / 2];
            r[i] = x1 * std::cos(a) - x2 * std::sin(a);
            r[i + rot / 2] = x2 * std::cos(a) + x1 * std::sin(a);
          }
        }
  };
  rope(q, Hq);
  rope(k, Hkv);
  std::vector<double> att(B * T * Hq * hd, 0.0), s(T);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < Hq; ++h)
      for (int64_t i = 0; i < T; ++i) {
        const int64_t kh = h / (Hq / Hkv);
        double mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j <= i; ++j) {
          double d = 0;
          for (int64_t c = 0; c < hd; ++c) d += q[((b * T + i) * Hq + h) * hd + c] * k[((b * T + j) * Hkv + kh) * hd + c];
          s[j] = d / std::sqrt(double(hd));
          mx = std::max(mx, s[j]);
        }
        for (int64_t j = 0; j <= i; ++j) sum += std::exp(s[j] - mx);
        for (int64_t j = 0; j <= i; ++j)
          for (int64_t c = 0; c < hd; ++c)
            att[((b * T + i) * Hq + h) * hd + c] += std::exp(s[j] - mx) / sum * v[((b * T + j) * Hkv + kh) * hd + c];
      }
  std::vector<double> y(B * T * D, 0.0);
  for (int64_t n = 0; n < B * T; ++n)
    for (int64_t d = 0; d < D; ++d)
      for (int64_t c = 0; c < Hq * hd; ++c) y[n * D + d] += double(wo[d * Hq * hd + c]) * att[n * Hq * hd + c];
  return y;
}

// Leading T1 of T tokens of x[B, T, D].
std::vector<float> head_tokens(const std::vector<float>& x, int64_t B, int64_t T, int64_t T1, int64_t D) {
  std::vector<float> h(B * T1 * D);
  for (int64_t b = 0; b < B; ++b) std::memcpy(&h[b * T1 * D], &x[b * T * D], sizeof(float) * T1 * D);
  return h;
}

}  // namespace

TEST(LayerAttention, ParametersAndInit) {
  Fixture f({64, 4, 2, 16}, 1);
  auto& infos = f.store.infos();
  ASSERT_EQ(infos.size(), 4u);
  EXPECT_EQ(infos[0].name, "layers.2.self_attn.q_proj.weight");
  EXPECT_EQ(infos[1].name, "layers.2.self_attn.k_proj.weight");
  EXPECT_EQ(infos[2].name, "layers.2.self_attn.v_proj.weight");
  EXPECT_EQ(infos[3].name, "layers.2.self_attn.o_proj.weight");
  EXPECT_EQ(infos[0].shape, (Shape{64, 64}));
  EXPECT_EQ(infos[1].shape, (Shape{32, 64}));
  EXPECT_EQ(infos[2].shape, (Shape{32, 64}));
  EXPECT_EQ(infos[3].shape, (Shape{64, 64}));
  for (auto& in : infos) EXPECT_TRUE(in.decay) << in.name;
  // n_layers = 4 * 2 = 8: o_proj std = 0.05 / sqrt(16). Sample std of >= 2048 normals is within ~3%.
  const double want[4] = {0.05, 0.05, 0.05, 0.05 / 4.0};
  for (int i = 0; i < 4; ++i) {
    const float* v = f.store.flat() + infos[i].offset;
    double ss = 0, s = 0;
    for (int64_t j = 0; j < infos[i].numel; ++j) ss += double(v[j]) * v[j], s += v[j];
    const double sd = std::sqrt(ss / double(infos[i].numel));
    std::printf("  %s std=%.4f want %.4f mean=%.4f\n", infos[i].name.c_str(), sd, want[i], s / double(infos[i].numel));
    EXPECT_NEAR(sd, want[i], 0.1 * want[i]) << infos[i].name;
  }
  EXPECT_EQ(f.blk->kind(), "attention");
  // 2 * D * hd * (2 Hq + 2 Hkv) for the projections + 2 * 2 * Hq * hd * (T + 1) / 2 for q.k and p.v.
  EXPECT_DOUBLE_EQ(f.blk->flops_per_token(99), 2.0 * 64 * 16 * 12 + 4.0 * 4 * 16 * 50);
  EXPECT_EQ(f.blk->cache_bytes_per_token(), 2 * 2 * 16 * 4);
  EXPECT_EQ(f.blk->cache_bytes_fixed(), 0);
  auto c = f.blk->allocate_cache(3, 10);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->pos, 0);
  EXPECT_EQ(c->bytes(), 3 * 10 * f.blk->cache_bytes_per_token());
}

TEST(LayerAttention, ForwardMatchesDoubleReference) {
  const Shape4 shapes[] = {{48, 4, 2, 16}, {32, 2, 2, 16}, {40, 4, 1, 10}};
  for (const Shape4& s : shapes) {
    std::printf("D=%d Hq=%d Hkv=%d hd=%d\n", s.D, s.Hq, s.Hkv, s.hd);
    Fixture f(s, 2);
    f.randomize(20);
    const int64_t B = 2, T = 70;
    auto x = st::randn(B * T * s.D, 21);
    auto y = f.forward(x, B, T, false);
    expect_close(y, ref_attention_layer(f, x, B, T), 2e-5, 1e-4, "y vs double ref");
    f.arena.reset();
    auto yt = f.forward(x, B, T, true);
    expect_close(yt, y, 0, 0, "training forward == inference forward");
  }
}

TEST(LayerAttention, StepParityAndPrefill) {
  // MHA, GQA, MQA; T = 70 crosses the 64-key tile of the kernels, and T1 = 37 splits it unevenly.
  const Shape4 shapes[] = {{32, 2, 2, 16}, {48, 4, 2, 16}, {32, 4, 1, 8}};
  for (const Shape4& s : shapes) {
    std::printf("D=%d Hq=%d Hkv=%d hd=%d\n", s.D, s.Hq, s.Hkv, s.hd);
    Fixture f(s, 3);
    f.randomize(30);
    const int64_t B = 2, T = 70, T1 = 37, D = s.D, maxT = 80;
    auto x = st::randn(B * T * D, 31);
    auto y = f.forward(x, B, T, false);

    // (a) T steps from an empty cache vs the forward over T.
    auto c_steps = f.blk->allocate_cache(B, maxT);
    auto ys = f.steps(x, B, T, 0, T, c_steps.get());
    expect_close(ys, y, 1e-4, 0, "steps vs forward");
    EXPECT_EQ(c_steps->pos, T);

    // (b) prefill of T1 tokens, then steps for the rest: outputs and cache equal steps from scratch.
    f.arena.reset();
    auto c_pre = f.blk->allocate_cache(B, maxT);
    auto y1 = f.forward(head_tokens(x, B, T, T1, D), B, T1, false, c_pre.get());
    EXPECT_EQ(c_pre->pos, T1);
    auto* a = dynamic_cast<AttentionCache*>(c_pre.get());
    auto* want = dynamic_cast<AttentionCache*>(c_steps.get());
    ASSERT_TRUE(a && want);
    {
      // After the prefill, the cache holds what T1 steps would have written.
      auto c_t1 = f.blk->allocate_cache(B, maxT);
      f.steps(x, B, T, 0, T1, c_t1.get());
      auto* w1 = dynamic_cast<AttentionCache*>(c_t1.get());
      expect_close(a->k.to_host(), w1->k.to_host(), 1e-5, 0, "prefill cache k vs T1 steps");
      expect_close(a->v.to_host(), w1->v.to_host(), 1e-5, 0, "prefill cache v vs T1 steps");
    }
    auto y2 = f.steps(x, B, T, T1, T, c_pre.get());
    std::vector<float> pre(B * T * D);
    for (int64_t b = 0; b < B; ++b) {
      std::memcpy(&pre[b * T * D], &y1[b * T1 * D], sizeof(float) * T1 * D);
      std::memcpy(&pre[(b * T + T1) * D], &y2[b * (T - T1) * D], sizeof(float) * (T - T1) * D);
    }
    expect_close(pre, ys, 1e-4, 0, "prefill+steps vs steps");
    EXPECT_EQ(c_pre->pos, T);
    expect_close(a->k.to_host(), want->k.to_host(), 1e-5, 0, "cache k: prefill+steps vs steps");
    expect_close(a->v.to_host(), want->v.to_host(), 1e-5, 0, "cache v: prefill+steps vs steps");
  }
}

// Whole-layer gradients (parameters and dx) against fp32 central finite differences of sum(w * y).
void check_gradients(Fixture& f) {
  f.randomize(40);
  st::GradCheck o;
  o.min_param_grad = 0.05;
  st::check_layer_gradients(f, f.D(), o);
}

TEST(LayerAttention, GradientsMatchFiniteDifferences) {
  const Shape4 shapes[] = {{24, 4, 2, 8}, {16, 2, 1, 16}};
  for (const Shape4& s : shapes) {
    std::printf("D=%d Hq=%d Hkv=%d hd=%d\n", s.D, s.Hq, s.Hkv, s.hd);
    Fixture f(s, 4);
    check_gradients(f);
  }
}

TEST(LayerAttention, RopeOptions) {
  // No positional encoding (Jamba), partial rotary (StableLM), linear and llama3 frequencies (the
  // latter partial too, and with a short original context so that all its regimes occur).
  RopeOpt opts[4];
  opts[0] = {"no rope", false, 0, "default", 1.0f};
  opts[1] = {"partial rope (rope_dims 6 of 10)", true, 6, "default", 1.0f};
  opts[2] = {"linear x4", true, 0, "linear", 4.0f};
  // theta 100, 8 rotary dims: wavelengths 6.3 .. 200, around original_max / 4 = 16 and original_max = 64.
  opts[3] = {"llama3 x8, rope_dims 8 of 12", true, 8, "llama3", 8.0f, 64};
  const Shape4 s{40, 4, 2, 10}, s3{48, 4, 1, 12};
  for (int k = 0; k < 4; ++k) {
    const RopeOpt& r = opts[k];
    const Shape4& sh = k == 3 ? s3 : s;
    std::printf("%s: D=%d Hq=%d Hkv=%d hd=%d\n", r.name, sh.D, sh.Hq, sh.Hkv, sh.hd);
    Fixture f(sh, 7, 100.0f, r);
    f.randomize(70);
    const int64_t B = 2, T = 45;
    auto x = st::randn(B * T * sh.D, 71);
    auto y = f.forward(x, B, T, false);
    expect_close(y, ref_attention_layer(f, x, B, T), 2e-5, 1e-4, "y vs double ref");
    auto c = f.blk->allocate_cache(B, T);
    expect_close(f.steps(x, B, T, 0, T, c.get()), y, 1e-4, 0, "steps vs forward");
    f.arena.reset();
    check_gradients(f);
  }
  // Without RoPE the position does not matter: a sequence of one repeated token gives one output.
  Fixture f(s, 8, 10000.0f, opts[0]);
  f.randomize(80);
  const int64_t T = 9;
  auto tok = st::randn(size_t(s.D), 81);
  std::vector<float> x;
  for (int64_t t = 0; t < T; ++t) x.insert(x.end(), tok.begin(), tok.end());
  auto y = f.forward(x, 1, T, false);
  for (int64_t t = 1; t < T; ++t)
    for (int64_t d = 0; d < s.D; ++d) EXPECT_NEAR(y[t * s.D + d], y[d], 1e-5) << t;
}

TEST(LayerAttention, BackwardNeedsTrainingForward) {
  const int64_t B = 2, T = 3, D = 32;
  Fixture f({32, 2, 1, 16}, 5);
  auto x = st::randn(B * T * D, 51);
  std::vector<float> dx(B * T * D), dy(B * T * D, 1.0f);
  EXPECT_THROW(f.blk->backward(f.ctx, dx.data(), dy.data(), B, T), Error);  // nothing ran
  f.forward(x, B, T, false);
  EXPECT_THROW(f.blk->backward(f.ctx, dx.data(), dy.data(), B, T), Error);  // inference forward only
  f.forward(x, B, T, true);
  EXPECT_THROW(f.blk->backward(f.ctx, dx.data(), dy.data(), B, T + 1), Error);  // other shape
  auto c = f.blk->allocate_cache(B, 4);
  std::vector<float> ys(B * D);
  f.blk->step(f.ctx, ys.data(), x.data(), B, c.get());  // a step in between leaves the saved state
  EXPECT_NO_THROW(f.blk->backward(f.ctx, dx.data(), dy.data(), B, T));
  EXPECT_THROW(f.blk->backward(f.ctx, dx.data(), dy.data(), B, T), Error);  // consumed
}

TEST(LayerAttention, CacheRefusals) {
  const int64_t B = 2, D = 32;
  Fixture f({32, 2, 1, 16}, 6);
  auto x = st::randn(B * 4 * D, 61);
  std::vector<float> ys(B * D);
  auto c = f.blk->allocate_cache(B, 2);
  f.blk->step(f.ctx, ys.data(), x.data(), B, c.get());
  f.blk->step(f.ctx, ys.data(), x.data(), B, c.get());
  EXPECT_THROW(f.blk->step(f.ctx, ys.data(), x.data(), B, c.get()), Error);  // past max_T
  EXPECT_EQ(c->pos, 2);
  EXPECT_THROW(f.forward(x, B, 1, false, c.get()), Error);  // prefill into a non-empty cache
  auto big = f.blk->allocate_cache(B, 3);
  EXPECT_THROW(f.forward(x, B, 4, false, big.get()), Error);  // prefill longer than the cache
  auto other = f.blk->allocate_cache(B + 1, 4);
  EXPECT_THROW(f.blk->step(f.ctx, ys.data(), x.data(), B, other.get()), Error);  // other batch
  EXPECT_THROW(f.blk->step(f.ctx, ys.data(), x.data(), B, nullptr), Error);
  struct OtherCache final : BlockCache {
    int64_t bytes() const override { return 0; }
  } foreign;
  EXPECT_THROW(f.blk->step(f.ctx, ys.data(), x.data(), B, &foreign), Error);  // another block's cache
}
