// Multi-head latent attention (DeepSeek-V2/V3 MLA): parameter names/shapes/init, the expanded
// forward against a double reference of HF's math, whole-layer gradients against central finite
// differences, absorbed decode over the latent cache against the forward, prefill-then-step against
// steps from scratch (outputs and cache), parity with transformers' DeepseekV3Attention (forward
// and decode; tests/hf_mla.py is the oracle), the config keys, and the refusals. Every shape runs
// with q_lora_rank == 0 and > 0, rope_interleave true and false.
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/error.h"
#include "layers/latent_attention.h"
#include "python_oracle.h"
#include "layer_gradcheck.h"
#include "testing.h"
#include "train/config_load.h"

using namespace strata;
namespace st = strata::testing;
namespace fs = std::filesystem;
using st::expect_close;

namespace {

const char* kPrefix = "layers.1.self_attn";

struct MlaShape {
  int D, H, rq, r, dn, dr, dv;
  bool interleave;
  float scale = 0.0f;  // 0 -> 1/sqrt(dn + dr)
};

void print_shape(const MlaShape& s) {
  std::printf("D=%d H=%d q_lora_rank=%d kv_lora_rank=%d nope=%d rope=%d v=%d interleave=%d scale=%g\n", s.D, s.H, s.rq,
              s.r, s.dn, s.dr, s.dv, int(s.interleave), double(s.scale));
}

// The four combinations of q compression and RoPE layout, on shapes that differ in every size.
const MlaShape kShapes[] = {
    {32, 4, 0, 24, 8, 4, 6, false},
    {32, 4, 0, 16, 6, 8, 10, true},
    {40, 2, 12, 20, 8, 6, 8, false},
    {48, 4, 16, 32, 16, 8, 12, true, 0.2f},
};

struct Fixture {
  ModelConfig cfg;
  ParamStore store;
  std::unique_ptr<Block> blk;
  Arena arena;
  Ctx ctx;

  Fixture(const MlaShape& s, uint64_t seed, float theta = 10000.0f) {
    cfg.d_model = s.D;
    cfg.attention.kind = "mla";
    cfg.attention.heads = s.H;
    cfg.attention.q_lora_rank = s.rq;
    cfg.attention.kv_lora_rank = s.r;
    cfg.attention.qk_nope_head_dim = s.dn;
    cfg.attention.qk_rope_head_dim = s.dr;
    cfg.attention.v_head_dim = s.dv;
    cfg.attention.rope_interleave = s.interleave;
    cfg.attention.softmax_scale = s.scale;
    cfg.attention.rope_theta = theta;
    cfg.pattern = "M*-*";
    cfg.repeat = 2;  // n_layers = 8
    cfg.init_std = 0.05f;
    resolve(cfg);
    blk = make_latent_attention(cfg, store, kPrefix);
    store.allocate(seed);
    ctx.arena = &arena;
  }
  const float* p(const std::string& sub) const {
    const int i = store.find(std::string(kPrefix) + "." + sub);
    return i < 0 ? nullptr : store.data(ParamRef{i});
  }
  // Weights of order 1/sqrt(fan_in), so that scores, outputs and gradients are O(0.1..1); norm
  // weights around 1 but not 1, so that a missing or misplaced norm weight shows.
  void randomize(uint64_t seed) {
    for (size_t i = 0; i < store.infos().size(); ++i) {
      const auto& in = store.infos()[i];
      const bool norm = in.shape.size() == 1;
      auto v = st::randn(size_t(in.numel), seed + i, norm ? 0.3f : 1.0f / std::sqrt(float(in.shape.back())));
      if (norm)
        for (auto& e : v) e += 1.0f;
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

using dvec = std::vector<double>;

// The whole layer in double, written after HF's DeepseekV3Attention.forward (expanded form).
// x[B, T, D] -> y[B, T, D].
dvec ref_mla_layer(const Fixture& f, const std::vector<float>& x, int64_t B, int64_t T) {
  const auto& a = f.cfg.attention;
  const int64_t D = f.D(), H = a.heads, rq = a.q_lora_rank, r = a.kv_lora_rank, dn = a.qk_nope_head_dim,
                dr = a.qk_rope_head_dim, dv = a.v_head_dim, dqk = dn + dr, N = B * T;
  const double scale = a.softmax_scale > 0 ? double(a.softmax_scale) : 1.0 / std::sqrt(double(dqk));
  // out[N, OC] = in[N, IC] w^T, w[OC, IC]
  auto lin = [&](const dvec& in, int64_t IC, const float* w, int64_t OC) {
    dvec out(size_t(N * OC), 0.0);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t o = 0; o < OC; ++o)
        for (int64_t i = 0; i < IC; ++i) out[n * OC + o] += double(w[o * IC + i]) * in[n * IC + i];
    return out;
  };
  auto rms = [&](dvec& v, int64_t C, const float* w) {  // eps 1e-6, HF's DeepseekV3RMSNorm default
    for (int64_t n = 0; n < N; ++n) {
      double ms = 0;
      for (int64_t c = 0; c < C; ++c) ms += v[n * C + c] * v[n * C + c];
      const double inv = 1.0 / std::sqrt(ms / double(C) + 1e-6);
      for (int64_t c = 0; c < C; ++c) v[n * C + c] = v[n * C + c] * inv * double(w[c]);
    }
  };
  // apply_rotary_pos_emb(_interleave) on the dr channels at p, token position t.
  auto rope = [&](double* p, int64_t t) {
    const int64_t half = dr / 2;
    dvec u(p, p + dr);
    if (a.rope_interleave)
      for (int64_t i = 0; i < half; ++i) u[i] = p[2 * i], u[half + i] = p[2 * i + 1];
    for (int64_t i = 0; i < half; ++i) {
      const double ang = double(t) * std::pow(double(a.rope_theta), -2.0 * double(i) / double(dr));
      p[i] = u[i] * std::cos(ang) - u[half + i] * std::sin(ang);
      p[half + i] = u[half + i] * std::cos(ang) + u[i] * std::sin(ang);
    }
  };
  const dvec xd(x.begin(), x.end());
  dvec q;
  if (rq == 0) {
    q = lin(xd, D, f.p("q_proj.weight"), H * dqk);
  } else {
    dvec qa = lin(xd, D, f.p("q_a_proj.weight"), rq);
    rms(qa, rq, f.p("q_a_layernorm.weight"));
    q = lin(qa, rq, f.p("q_b_proj.weight"), H * dqk);
  }
  dvec ckv = lin(xd, D, f.p("kv_a_proj_with_mqa.weight"), r + dr);
  dvec c(size_t(N * r)), kr(size_t(N * dr));
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t i = 0; i < r; ++i) c[n * r + i] = ckv[n * (r + dr) + i];
    for (int64_t i = 0; i < dr; ++i) kr[n * dr + i] = ckv[n * (r + dr) + r + i];
  }
  rms(c, r, f.p("kv_a_layernorm.weight"));
  for (int64_t n = 0; n < N; ++n) {
    rope(&kr[n * dr], n % T);
    for (int64_t h = 0; h < H; ++h) rope(&q[(n * H + h) * dqk + dn], n % T);
  }
  dvec kv = lin(c, r, f.p("kv_b_proj.weight"), H * (dn + dv));
  dvec att(size_t(N * H * dv), 0.0), s(static_cast<size_t>(T));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < T; ++i) {
        const double* qi = &q[((b * T + i) * H + h) * dqk];
        double mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j <= i; ++j) {
          const int64_t m = b * T + j;
          double d = 0;
          for (int64_t e = 0; e < dn; ++e) d += qi[e] * kv[(m * H + h) * (dn + dv) + e];
          for (int64_t e = 0; e < dr; ++e) d += qi[dn + e] * kr[m * dr + e];
          s[j] = d * scale;
          mx = std::max(mx, s[j]);
        }
        for (int64_t j = 0; j <= i; ++j) sum += std::exp(s[j] - mx);
        double* o = &att[((b * T + i) * H + h) * dv];
        for (int64_t j = 0; j <= i; ++j)
          for (int64_t e = 0; e < dv; ++e)
            o[e] += std::exp(s[j] - mx) / sum * kv[((b * T + j) * H + h) * (dn + dv) + dn + e];
      }
  return lin(att, H * dv, f.p("o_proj.weight"), D);
}

// Leading T1 of T tokens of x[B, T, D].
std::vector<float> head_tokens(const std::vector<float>& x, int64_t B, int64_t T, int64_t T1, int64_t D) {
  std::vector<float> h(B * T1 * D);
  for (int64_t b = 0; b < B; ++b) std::memcpy(&h[b * T1 * D], &x[b * T * D], sizeof(float) * T1 * D);
  return h;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(double(a[i]) - double(b[i])));
  return m;
}

}  // namespace

TEST(LayerMla, ParametersAndInit) {
  {
    Fixture f({32, 4, 0, 24, 8, 4, 6, true}, 1);
    std::vector<std::pair<std::string, Shape>> want = {{"q_proj.weight", {48, 32}},
                                                       {"kv_a_proj_with_mqa.weight", {28, 32}},
                                                       {"kv_a_layernorm.weight", {24}},
                                                       {"kv_b_proj.weight", {56, 24}},
                                                       {"o_proj.weight", {32, 24}}};
    const auto& infos = f.store.infos();
    ASSERT_EQ(infos.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(infos[i].name, std::string(kPrefix) + "." + want[i].first);
      EXPECT_EQ(infos[i].shape, want[i].second) << infos[i].name;
      EXPECT_EQ(infos[i].decay, infos[i].shape.size() == 2) << infos[i].name;
    }
    const float* ln = f.p("kv_a_layernorm.weight");
    for (int i = 0; i < 24; ++i) EXPECT_EQ(ln[i], 1.0f);
    // n_layers = 8: o_proj std = 0.05 / sqrt(16); the other matrices 0.05.
    for (auto& in : infos) {
      if (in.shape.size() != 2) continue;
      const float* v = f.store.flat() + in.offset;
      double ss = 0;
      for (int64_t j = 0; j < in.numel; ++j) ss += double(v[j]) * v[j];
      const double sd = std::sqrt(ss / double(in.numel)),
                   want_sd = in.name.find("o_proj") != std::string::npos ? 0.05 / 4 : 0.05;
      std::printf("  %s std=%.4f want %.4f\n", in.name.c_str(), sd, want_sd);
      EXPECT_NEAR(sd, want_sd, 0.15 * want_sd) << in.name;
    }
    EXPECT_EQ(f.blk->kind(), "mla");
    // Projections 32*48 + 32*28 + 24*56 + 24*32, attention 4 heads * (12 + 6) * (T + 1) / 2.
    const double proj = 32.0 * 48 + 32.0 * 28 + 24.0 * 56 + 24.0 * 32;
    EXPECT_DOUBLE_EQ(f.blk->flops_per_token(99), 2.0 * proj + 2.0 * 4 * 18 * 50);
    // The compressed cache: kv_lora_rank + qk_rope_head_dim floats per token.
    EXPECT_EQ(f.blk->cache_bytes_per_token(), 4 * (24 + 4));
    EXPECT_EQ(f.blk->cache_bytes_fixed(), 0);
    auto c = f.blk->allocate_cache(3, 10);
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c->pos, 0);
    EXPECT_EQ(c->bytes(), 3 * 10 * f.blk->cache_bytes_per_token());
  }
  {
    Fixture f({40, 2, 12, 20, 8, 6, 8, false}, 1);
    std::vector<std::pair<std::string, Shape>> want = {
        {"q_a_proj.weight", {12, 40}},           {"q_a_layernorm.weight", {12}}, {"q_b_proj.weight", {28, 12}},
        {"kv_a_proj_with_mqa.weight", {26, 40}}, {"kv_a_layernorm.weight", {20}}, {"kv_b_proj.weight", {32, 20}},
        {"o_proj.weight", {40, 16}}};
    const auto& infos = f.store.infos();
    ASSERT_EQ(infos.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(infos[i].name, std::string(kPrefix) + "." + want[i].first);
      EXPECT_EQ(infos[i].shape, want[i].second) << infos[i].name;
    }
  }
}

TEST(LayerMla, ForwardMatchesDoubleReference) {
  for (const MlaShape& s : kShapes) {
    print_shape(s);
    Fixture f(s, 2);
    f.randomize(20);
    const int64_t B = 2, T = 70;  // crosses the 64-key tile of the attention kernel
    auto x = st::randn(B * T * s.D, 21);
    auto y = f.forward(x, B, T, false);
    expect_close(y, ref_mla_layer(f, x, B, T), 2e-5, 1e-4, "y vs double ref");
    f.arena.reset();
    auto yt = f.forward(x, B, T, true);
    expect_close(yt, y, 0, 0, "training forward == inference forward");
  }
}

TEST(LayerMla, DecodeOverLatentCacheMatchesForwardAndPrefill) {
  for (const MlaShape& s : kShapes) {
    print_shape(s);
    Fixture f(s, 3);
    f.randomize(30);
    const int64_t B = 2, T = 70, T1 = 37, D = s.D, maxT = 80, W = s.r + s.dr;
    auto x = st::randn(B * T * D, 31);
    auto y = f.forward(x, B, T, false);

    // (a) T absorbed steps from an empty cache vs the expanded forward over T.
    auto c_steps = f.blk->allocate_cache(B, maxT);
    auto ys = f.steps(x, B, T, 0, T, c_steps.get());
    std::printf("  decode (absorbed, latent cache) vs forward: max abs diff %.3e\n", max_abs_diff(ys, y));
    expect_close(ys, y, 1e-4, 0, "steps vs forward");
    EXPECT_EQ(c_steps->pos, T);
    auto* want = dynamic_cast<LatentCache*>(c_steps.get());
    ASSERT_TRUE(want);
    EXPECT_EQ(want->width, W);

    // (b) prefill of T1 tokens, then steps: the cache after the prefill is what T1 steps write, and
    // outputs and final cache equal the steps from scratch.
    f.arena.reset();
    auto c_pre = f.blk->allocate_cache(B, maxT);
    auto y1 = f.forward(head_tokens(x, B, T, T1, D), B, T1, false, c_pre.get());
    EXPECT_EQ(c_pre->pos, T1);
    auto* a = dynamic_cast<LatentCache*>(c_pre.get());
    ASSERT_TRUE(a);
    {
      auto c_t1 = f.blk->allocate_cache(B, maxT);
      f.steps(x, B, T, 0, T1, c_t1.get());
      expect_close(a->rows.to_host(), dynamic_cast<LatentCache*>(c_t1.get())->rows.to_host(), 1e-5, 0, "prefill cache vs T1 steps");
    }
    auto y2 = f.steps(x, B, T, T1, T, c_pre.get());
    std::vector<float> pre(B * T * D);
    for (int64_t b = 0; b < B; ++b) {
      std::memcpy(&pre[b * T * D], &y1[b * T1 * D], sizeof(float) * T1 * D);
      std::memcpy(&pre[(b * T + T1) * D], &y2[b * (T - T1) * D], sizeof(float) * (T - T1) * D);
    }
    std::printf("  prefill(%ld)+steps vs steps from scratch: max abs diff %.3e\n", long(T1), max_abs_diff(pre, ys));
    expect_close(pre, ys, 1e-4, 0, "prefill+steps vs steps");
    EXPECT_EQ(c_pre->pos, T);
    expect_close(a->rows.to_host(), want->rows.to_host(), 1e-5, 0, "cache: prefill+steps vs steps");
  }
}

TEST(LayerMla, GradientsMatchFiniteDifferences) {
  for (const MlaShape& s : kShapes) {
    print_shape(s);
    const int64_t D = s.D;
    Fixture f(s, 4);
    f.randomize(40);
    st::GradCheck o;
    o.min_param_grad = 0.02;
    o.dx_samples = 30;
    st::check_layer_gradients(f, D, o);
  }
}

TEST(LayerMla, RefusalsLikeAttention) {
  const int64_t B = 2, T = 3, D = 32;
  Fixture f(kShapes[1], 5);
  auto x = st::randn(B * 4 * D, 51);
  std::vector<float> dx(B * T * D), dy(B * T * D, 1.0f), ys(B * D);
  EXPECT_THROW(f.blk->backward(f.ctx, dx.data(), dy.data(), B, T), Error);  // nothing ran
  f.forward(x, B, T, false);
  EXPECT_THROW(f.blk->backward(f.ctx, dx.data(), dy.data(), B, T), Error);  // inference forward only
  f.forward(x, B, T, true);
  EXPECT_THROW(f.blk->backward(f.ctx, dx.data(), dy.data(), B, T + 1), Error);  // other shape
  auto c = f.blk->allocate_cache(B, 2);
  f.blk->step(f.ctx, ys.data(), x.data(), B, c.get());  // a step in between leaves the saved state
  EXPECT_NO_THROW(f.blk->backward(f.ctx, dx.data(), dy.data(), B, T));
  EXPECT_THROW(f.blk->backward(f.ctx, dx.data(), dy.data(), B, T), Error);  // consumed
  f.blk->step(f.ctx, ys.data(), x.data(), B, c.get());
  EXPECT_THROW(f.blk->step(f.ctx, ys.data(), x.data(), B, c.get()), Error);  // past max_T
  EXPECT_THROW(f.forward(x, B, 1, false, c.get()), Error);                    // prefill into a non-empty cache
  auto small = f.blk->allocate_cache(B, 3);
  EXPECT_THROW(f.forward(x, B, 4, false, small.get()), Error);  // prefill longer than the cache
  auto other = f.blk->allocate_cache(B + 1, 4);
  EXPECT_THROW(f.blk->step(f.ctx, ys.data(), x.data(), B, other.get()), Error);  // other batch
  EXPECT_THROW(f.blk->step(f.ctx, ys.data(), x.data(), B, nullptr), Error);
  Fixture g(kShapes[0], 5);  // an MLA cache of another width
  auto foreign = g.blk->allocate_cache(B, 4);
  EXPECT_THROW(f.blk->step(f.ctx, ys.data(), x.data(), B, foreign.get()), Error);
}

// ---- config ----

namespace {
std::string config_error(const std::string& yaml) {
  try {
    parse_config(yaml, "cfg.yaml");
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no error)";
}
}  // namespace

TEST(LayerMla, ConfigKeysBuildTheLayer) {
  Config c = parse_config(
      "model:\n  d_model: 64\n  pattern: '*-'\n  attention: {kind: mla, heads: 4, q_lora_rank: 16, kv_lora_rank: 32,\n"
      "    qk_nope_head_dim: 8, qk_rope_head_dim: 4, v_head_dim: 12, rope_interleave: false, softmax_scale: 0.25}\n",
      "cfg.yaml");
  const auto& a = c.model.attention;
  EXPECT_EQ(a.kind, "mla");
  EXPECT_EQ(a.q_lora_rank, 16);
  EXPECT_EQ(a.kv_lora_rank, 32);
  EXPECT_EQ(a.qk_nope_head_dim, 8);
  EXPECT_EQ(a.qk_rope_head_dim, 4);
  EXPECT_EQ(a.v_head_dim, 12);
  EXPECT_FALSE(a.rope_interleave);
  EXPECT_EQ(a.softmax_scale, 0.25f);
  ParamStore store;
  auto blk = make_block('*', c.model, store, "layers.0");
  EXPECT_EQ(blk->kind(), "mla");
  EXPECT_GE(store.find("layers.0.self_attn.kv_b_proj.weight"), 0);
  EXPECT_GE(store.find("layers.0.self_attn.q_a_layernorm.weight"), 0);
  EXPECT_EQ(blk->cache_bytes_per_token(), 4 * (32 + 4));
  // Zeros derive DeepSeek-V2's proportions from head_dim = d_model / heads = 16.
  Config d = parse_config("model: {d_model: 64, pattern: '*', attention: {kind: mla, heads: 4}}\n", "cfg.yaml");
  EXPECT_EQ(d.model.attention.q_lora_rank, 0);
  EXPECT_EQ(d.model.attention.kv_lora_rank, 64);
  EXPECT_EQ(d.model.attention.qk_nope_head_dim, 16);
  EXPECT_EQ(d.model.attention.qk_rope_head_dim, 8);
  EXPECT_EQ(d.model.attention.v_head_dim, 16);
  EXPECT_TRUE(d.model.attention.rope_interleave);
  // kind gqa keeps the Llama block.
  Config g = parse_config("model: {d_model: 64, pattern: '*'}\n", "cfg.yaml");
  ParamStore s2;
  EXPECT_EQ(make_block('*', g.model, s2, "layers.0")->kind(), "attention");
}

TEST(LayerMla, ConfigErrorsNameTheKey) {
  struct Case {
    std::string yaml;
    std::vector<std::string> want;
  };
  const std::string pre = "model: {d_model: 64, pattern: '*', attention: {kind: mla, heads: 4, ";
  const Case cases[] = {
      {pre + "qk_rope_head_dim: 3}}\n", {"model.attention.qk_rope_head_dim", "even", "got 3"}},
      {pre + "kv_lora_rank: -1}}\n", {"model.attention.kv_lora_rank", ">= 0"}},
      {pre + "q_lora_rank: -2}}\n", {"model.attention.q_lora_rank", ">= 0"}},
      {pre + "v_head_dim: -1}}\n", {"model.attention.v_head_dim", ">= 0"}},
      {pre + "softmax_scale: -0.1}}\n", {"model.attention.softmax_scale", ">= 0"}},
      {pre + "rope_interleave: maybe}}\n", {"model.attention.rope_interleave"}},
      // head_dim = 8 / 4 = 2: the derived rope dim 2 / 4 * 2 = 0 is refused, saying it was derived.
      {"model: {d_model: 8, pattern: '*', attention: {kind: mla, heads: 4}}\n",
       {"model.attention.qk_rope_head_dim", "derived", "head_dim = 2", "set it explicitly"}},
      {"model: {attention: {kind: MLA}}\n", {"model.attention.kind", "gqa, mla"}},
      {pre + "rope: false}}\n", {"model.attention.rope", "kind=mla"}},
  };
  for (const Case& c : cases) {
    const std::string m = config_error(c.yaml);
    std::printf("  %s", m.c_str());
    if (m.back() != '\n') std::printf("\n");
    for (const auto& w : c.want) EXPECT_NE(m.find(w), std::string::npos) << "'" << w << "' not in: " << m;
  }
  // The MLA sizes are not checked when the pattern has no attention or the kind is gqa.
  EXPECT_NO_THROW(parse_config("model: {d_model: 8, pattern: '-', attention: {kind: mla, heads: 4}}\n", "cfg.yaml"));
  EXPECT_NO_THROW(parse_config("model: {d_model: 64, pattern: '*', attention: {qk_rope_head_dim: 3}}\n", "cfg.yaml"));
}

// ---- parity with transformers ----

namespace {

struct HfCase {
  nlohmann::json meta;
  fs::path dir;
  std::vector<float> read(const std::string& name) const {
    std::ifstream f(dir / (name + ".bin"), std::ios::binary);
    EXPECT_TRUE(f.good()) << "missing " << (dir / (name + ".bin"));
    std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    std::vector<float> v(bytes.size() / sizeof(float));
    std::memcpy(v.data(), bytes.data(), v.size() * sizeof(float));
    return v;
  }
};

}  // namespace

TEST(LayerMla, MatchesTransformersDeepseekV3Attention) {
  std::string why;
  const std::string py = st::test_python(&why);
  if (py.empty()) GTEST_SKIP() << "no Python test venv: " << why;
  const fs::path out = fs::temp_directory_path() / ("strata_mla_" + std::to_string(getpid()));
  fs::remove_all(out);
  std::string log;
  const int rc = st::run_command(st::shell_quote(py) + " " + st::shell_quote(st::source_dir() + "/tests/hf_mla.py") +
                                     " " + st::shell_quote(out.string()),
                                 &log, true);
  ASSERT_EQ(rc, 0) << log;
  std::ifstream mf(out / "cases.json");
  const nlohmann::json cases = nlohmann::json::parse(mf);
  ASSERT_GE(cases.size(), 3u);
  for (const auto& meta : cases) {
    HfCase hc{meta, out / meta["name"].get<std::string>()};
    const auto& cfg = meta["config"];
    MlaShape s{cfg["hidden_size"], cfg["num_attention_heads"], cfg["q_lora_rank"].is_null() ? 0 : int(cfg["q_lora_rank"]),
               cfg["kv_lora_rank"], cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"],
               cfg["rope_interleave"], meta["softmax_scale"].get<float>()};
    std::printf("%s (HF scaling %.6g): ", meta["name"].get<std::string>().c_str(), meta["hf_scaling"].get<double>());
    print_shape(s);
    Fixture f(s, 1, meta["rope_theta"].get<float>());
    for (const auto& [name, shape] : meta["params"].items()) {
      const int i = f.store.find(std::string(kPrefix) + "." + name);
      ASSERT_GE(i, 0) << "transformers has " << name << ", strata does not";
      EXPECT_EQ(f.store.infos()[i].shape, shape.get<Shape>()) << name;
      auto v = hc.read(name);
      ASSERT_EQ(int64_t(v.size()), f.store.infos()[i].numel) << name;
      std::memcpy(f.store.data(ParamRef{i}), v.data(), sizeof(float) * v.size());
    }
    EXPECT_EQ(f.store.infos().size(), meta["params"].size()) << "strata has parameters transformers does not";
    const int64_t B = meta["B"], T = meta["T"];
    const auto x = hc.read("x"), want = hc.read("y");
    auto y = f.forward(x, B, T, false);
    std::printf("  forward vs transformers: max abs diff %.3e\n", max_abs_diff(y, want));
    expect_close(y, want, 1e-4, 0, "forward vs transformers");
    auto c = f.blk->allocate_cache(B, T);
    auto ys = f.steps(x, B, T, 0, T, c.get());
    std::printf("  decode (absorbed) vs transformers: max abs diff %.3e\n", max_abs_diff(ys, want));
    expect_close(ys, want, 1e-4, 0, "decode vs transformers");
    // The cache holds what HF's DynamicCache holds: the normalised latent and the rotated rope key.
    const auto kv_nope = hc.read("cache_kv_nope"), k_rot = hc.read("cache_k_rot");
    const int64_t r = s.r, dr = s.dr;
    const auto rows = dynamic_cast<LatentCache*>(c.get())->rows.to_host();
    std::vector<float> lat, rot;
    for (int64_t n = 0; n < B * T; ++n) {
      lat.insert(lat.end(), rows.begin() + n * (r + dr), rows.begin() + n * (r + dr) + r);
      rot.insert(rot.end(), rows.begin() + n * (r + dr) + r, rows.begin() + (n + 1) * (r + dr));
    }
    expect_close(lat, kv_nope, 1e-5, 0, "cache latent vs transformers kv_nope");
    expect_close(rot, k_rot, 1e-5, 0, "cache rope key vs transformers k_rot");
  }
  fs::remove_all(out);
}
