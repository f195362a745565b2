// Multi-head latent attention (pattern char '*' with attention.kind: mla), see latent_attention.h.
// Shapes below: N = B*T tokens, H heads, r = kv_lora_rank, dn / dr / dv = qk_nope / qk_rope /
// v head dims, dqk = dn + dr, W = r + dr (one latent cache row).
#include "layers/latent_attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/rope.h"
#include "kernels/dispatch.h"
#include "layers/attention.h"
#include "layers/block_state.h"
#include "layers/linear.h"
#include "layers/row_pools.h"
#include "layers/rope_freq.h"

namespace strata {
namespace {

// HF builds q_a_layernorm and kv_a_layernorm as DeepseekV3RMSNorm(rank) without passing
// rms_norm_eps, so they keep the class default.
constexpr float kLatentNormEps = 1e-6f;

// How copy_rows orders the channels of a row. DeepSeek-V3 stores RoPE pairs interleaved,
// (x0, x1), (x2, x3), ...; HF's apply_rotary_pos_emb_interleave rotates them as rotate_half halves
// after gathering evens then odds, and keeps that gathered order in its output (and its cache).
enum class Pairs {
  keep,   // dst[j] = src[j]
  split,  // dst[j] = src[2j], dst[w/2 + j] = src[2j + 1]   (before RoPE, forward)
  merge,  // the inverse of split                          (after the inverse RoPE, backward)
};

// dst row i (row stride ds) = src row i (row stride ss), w channels, reordered by p, on dev. No aliasing.
void copy_rows(Device dev, float* dst, int64_t ds, const float* src, int64_t ss, int64_t rows, int64_t w, Pairs p) {
  if (p == Pairs::keep)
    STRATA_OP(dev, copy_strided, dst, ds, src, ss, rows, w);
  else
    STRATA_OP(dev, copy_strided_pairs, dst, ds, src, ss, rows, w, p == Pairs::split);
}

class LatentAttention final : public Block {
 public:
  LatentAttention(const ModelConfig& cfg, ParamStore& store, const std::string& prefix)
      : store_(store),
        D_(cfg.d_model),
        H_(cfg.attention.heads),
        rq_(cfg.attention.q_lora_rank),
        r_(cfg.attention.kv_lora_rank),
        dn_(cfg.attention.qk_nope_head_dim),
        dr_(cfg.attention.qk_rope_head_dim),
        dv_(cfg.attention.v_head_dim),
        dqk_(dn_ + dr_),
        W_(r_ + dr_),
        interleave_(cfg.attention.rope_interleave),
        theta_(cfg.attention.rope_theta),
        window_(cfg.attention.window) {
    const auto& a = cfg.attention;
    STRATA_CHECK(D_ > 0 && H_ > 0, "{}: d_model ({}) and attention.heads ({}) must be positive", prefix, D_, H_);
    if (window_ < 0)
      throw InputError(fmt::format("{}: attention.window must be >= 0 (0 = full causal; got {})", prefix, window_));
    STRATA_CHECK(r_ > 0, "{}: attention.kv_lora_rank must be positive (got {}); call resolve()", prefix, r_);
    STRATA_CHECK(rq_ >= 0, "{}: attention.q_lora_rank must be >= 0 (got {})", prefix, rq_);
    STRATA_CHECK(dn_ > 0 && dv_ > 0, "{}: attention.qk_nope_head_dim ({}) and v_head_dim ({}) must be positive", prefix,
                 dn_, dv_);
    STRATA_CHECK(dr_ > 0 && dr_ % 2 == 0, "{}: attention.qk_rope_head_dim must be positive and even for RoPE (got {})",
                 prefix, dr_);
    STRATA_CHECK(theta_ > 0, "{}: attention.rope_theta must be positive (got {})", prefix, theta_);
    STRATA_CHECK(a.softmax_scale >= 0 && std::isfinite(a.softmax_scale),
                 "{}: attention.softmax_scale must be >= 0 (0 = 1/sqrt(qk head dim)), got {}", prefix, a.softmax_scale);
    scale_ = a.softmax_scale > 0 ? a.softmax_scale : 1.0f / std::sqrt(float(dqk_));
    // RoPE over the rope channels only: DeepseekV3Config sets head_dim = qk_rope_head_dim, which is
    // the dim HF's rope init functions build the frequencies for.
    STRATA_CHECK(a.rope, "{}: attention.rope=false is not supported with attention.kind=mla (MLA's rope key is "
                 "its positional part)", prefix);
    inv_freq_ = rope_inv_freq(a, dr_);
    const int64_t n_layers = std::max<int64_t>(1, int64_t(cfg.pattern.size()) * cfg.repeat);
    // GPT-2 scaled init of the projection that writes into the residual stream.
    const float out_std = cfg.init_std / std::sqrt(2.0f * float(n_layers));
    const Init w = Init::normal(cfg.init_std);
    if (rq_ == 0) {
      wq_ = store.add(prefix + ".q_proj.weight", {H_ * dqk_, D_}, w, true);
    } else {
      wqa_ = store.add(prefix + ".q_a_proj.weight", {rq_, D_}, w, true);
      q_norm_ = store.add(prefix + ".q_a_layernorm.weight", {rq_}, Init::constant(1.0f), false);
      wqb_ = store.add(prefix + ".q_b_proj.weight", {H_ * dqk_, rq_}, w, true);
    }
    wkva_ = store.add(prefix + ".kv_a_proj_with_mqa.weight", {W_, D_}, w, true);
    kv_norm_ = store.add(prefix + ".kv_a_layernorm.weight", {r_}, Init::constant(1.0f), false);
    wkvb_ = store.add(prefix + ".kv_b_proj.weight", {H_ * (dn_ + dv_), r_}, w, true);
    wo_ = store.add(prefix + ".o_proj.weight", {D_, H_ * dv_}, Init::normal(out_std), true);
  }

  std::string kind() const override { return "mla"; }

  // x[B, T, D] -> y[B, T, D], expanded form. Training saves x, the query path, the latent before
  // and after its norm, post-RoPE q, k, v, the attention output and its log-sum-exp. With a cache
  // (prefill), the latent rows [c, rope(kr)] of all T positions are written to it.
  void forward(Ctx& ctx, float* y, const float* x, int64_t B, int64_t T, BlockCache* cache) override {
    STRATA_CHECK(ctx.arena, "mla forward needs ctx.arena");
    LatentCache* lc = as_cache(cache, B, /*prefill=*/true);
    if (lc) STRATA_CHECK(T <= lc->max_T, "mla prefill of {} tokens into a cache of {}", T, lc->max_T);
    saved_.clear();
    const int64_t N = B * T, Cq = H_ * dqk_, Co = H_ * dv_, Ckv = H_ * (dn_ + dv_);
    Arena& ar = *ctx.arena;
    Acts a;
    a.x = kept_input(ctx, x, N * D_);
    if (rq_) a.qa = ar.alloc(N * rq_), a.qa_rstd = ar.alloc(N), a.qan = ar.alloc(N * rq_);
    a.q = ar.alloc(N * Cq);
    a.lat = ar.alloc(N * r_);
    a.c = ar.alloc(N * r_);
    a.c_rstd = ar.alloc(N);
    a.kpe = ar.alloc(N * dr_);
    a.k = ar.alloc(N * Cq);
    a.v = ar.alloc(N * Co);
    a.att = ar.alloc(N * Co);
    a.lse = ctx.training ? ar.alloc(B * H_ * T) : nullptr;
    if (N > 0) {
      float* ckv = ar.alloc(N * W_);
      float* kv = ar.alloc(N * Ckv);
      float* pe = ar.alloc(N * H_ * dr_);
      project_q(ctx, a.q, a.qa, a.qa_rstd, a.qan, a.x, N);
      linear_forward(ctx, ckv, a.x, w(wkva_), nullptr, N, D_, W_);
      copy_rows(ctx.device, a.lat, r_, ckv, W_, N, r_, Pairs::keep);
      STRATA_OP(ctx.device, rmsnorm_forward, a.c, a.c_rstd, a.lat, w(kv_norm_), N, r_, kLatentNormEps);
      copy_rows(ctx.device, a.kpe, dr_, ckv + r_, W_, N, dr_, pairs_in());
      rope(ctx, a.kpe, B, T, 1, 0, false);
      rope_q(ctx, a.q, pe, B, T, 0);
      // Expand the latent: kv[N, H, dn + dv] = c Wkvb^T; k_h = [k_nope_h, rope(kr)], v_h.
      linear_forward(ctx, kv, a.c, w(wkvb_), nullptr, N, r_, Ckv);
      copy_rows(ctx.device, a.k, dqk_, kv, dn_ + dv_, N * H_, dn_, Pairs::keep);
      for (int64_t h = 0; h < H_; ++h) copy_rows(ctx.device, a.k + h * dqk_ + dn_, Cq, a.kpe, dr_, N, dr_, Pairs::keep);
      copy_rows(ctx.device, a.v, dv_, kv + dn_, dn_ + dv_, N * H_, dv_, Pairs::keep);
      STRATA_OP(ctx.device, attention_forward, a.att, a.lse, a.q, a.k, a.v, B, T, T, H_, H_, dqk_, dv_, scale_,
                T * Cq, Cq, T * Co, Co, window_);
      linear_forward(ctx, y, a.att, w(wo_), nullptr, N, Co, D_);
    }
    if (lc) {
      for (int64_t b = 0; b < B && T > 0; ++b) {
        float* rows = lc->rows.data() + b * lc->max_T * W_;
        copy_rows(ctx.device, rows, W_, a.c + b * T * r_, r_, T, r_, Pairs::keep);
        copy_rows(ctx.device, rows + r_, W_, a.kpe + b * T * dr_, dr_, T, dr_, Pairs::keep);
      }
      lc->pos = T;
    }
    if (ctx.training) saved_.keep(a, B, T);
  }

  // dy[B, T, D] -> dx[B, T, D] (assigned); weight grads accumulated.
  void backward(Ctx& ctx, float* dx, const float* dy, int64_t B, int64_t T) override {
    const Acts& a = saved_.take("mla", B, T);
    const int64_t N = B * T, Cq = H_ * dqk_, Co = H_ * dv_, Ckv = H_ * (dn_ + dv_);
    if (N == 0) return;
    Arena& ar = *ctx.arena;
    float* datt = ar.alloc(N * Co);
    float* dq = ar.alloc(N * Cq);
    float* dk = ar.alloc(N * Cq);
    float* dv = ar.alloc(N * Co);
    float* dkv = ar.alloc(N * Ckv);
    float* dkpe = ar.alloc(N * dr_);
    float* dc = ar.alloc(N * r_);
    float* dlat = ar.alloc(N * r_);
    float* dckv = ar.alloc(N * W_);
    float* pe = ar.alloc(N * H_ * dr_);
    linear_backward(ctx, datt, g(wo_), nullptr, dy, a.att, w(wo_), N, Co, D_, false);
    STRATA_OP(ctx.device, attention_backward, dq, dk, dv, datt, a.q, a.k, a.v, a.att, a.lse, B, T, H_, H_, dqk_, dv_,
              scale_, window_);
    // Back through the expansion: dkv_h = [dk_nope_h, dv_h]; the shared rope key gets the sum over heads.
    copy_rows(ctx.device, dkv, dn_ + dv_, dk, dqk_, N * H_, dn_, Pairs::keep);
    copy_rows(ctx.device, dkv + dn_, dn_ + dv_, dv, dv_, N * H_, dv_, Pairs::keep);
    STRATA_OP(ctx.device, copy_strided, dkpe, dr_, dk + dn_, Cq, N, dr_);
    for (int64_t h = 1; h < H_; ++h) STRATA_OP(ctx.device, add_strided, dkpe, dr_, dk + h * dqk_ + dn_, Cq, N, dr_);
    rope(ctx, dkpe, B, T, 1, 0, true);
    copy_rows(ctx.device, dckv + r_, W_, dkpe, dr_, N, dr_, pairs_out());
    linear_backward(ctx, dc, g(wkvb_), nullptr, dkv, a.c, w(wkvb_), N, r_, Ckv, false);
    STRATA_OP(ctx.device, rmsnorm_backward, dlat, g(kv_norm_), dc, a.lat, w(kv_norm_), a.c_rstd, N, r_);
    copy_rows(ctx.device, dckv, W_, dlat, r_, N, r_, Pairs::keep);
    // The query's rope channels: inverse rotation, then back to the weights' channel order.
    copy_rows(ctx.device, pe, dr_, dq + dn_, dqk_, N * H_, dr_, Pairs::keep);
    rope(ctx, pe, B, T, H_, 0, true);
    copy_rows(ctx.device, dq + dn_, dqk_, pe, dr_, N * H_, dr_, pairs_out());
    if (rq_) {
      float* dqan = ar.alloc(N * rq_);
      float* dqa = ar.alloc(N * rq_);
      linear_backward(ctx, dqan, g(wqb_), nullptr, dq, a.qan, w(wqb_), N, rq_, Cq, false);
      STRATA_OP(ctx.device, rmsnorm_backward, dqa, g(q_norm_), dqan, a.qa, w(q_norm_), a.qa_rstd, N, rq_);
      linear_backward(ctx, dx, g(wqa_), nullptr, dqa, a.x, w(wqa_), N, D_, rq_, false);
    } else {
      linear_backward(ctx, dx, g(wq_), nullptr, dq, a.x, w(wq_), N, D_, Cq, false);
    }
    linear_backward(ctx, dx, g(wkva_), nullptr, dckv, a.x, w(wkva_), N, D_, W_, true);
  }

  std::unique_ptr<BlockCache> allocate_cache(int64_t B, int64_t max_T) const override {
    STRATA_CHECK(B >= 0 && max_T >= 0, "mla cache for batch {} and {} tokens", B, max_T);
    auto c = std::make_unique<LatentCache>();
    c->batch = B;
    c->max_T = max_T;
    c->width = W_;
    c->rows = DeviceArray<float>::zeros(size_t(B * max_T * W_), store_.device());
    return c;
  }

  // x[B, D] -> y[B, D]: the token at position cache->pos, absorbed form. Its latent row is appended
  // to the cache; the query is taken into latent space per head (q_lat_h = Wuk_h^T q_nope_h) and
  // attends over the pos + 1 cached rows; the latent output is mapped out per head by Wuv_h, then o_proj.
  void step(Ctx& ctx, float* y, const float* x, int64_t B, BlockCache* cache) override {
    STRATA_CHECK(ctx.arena, "mla step needs ctx.arena");
    STRATA_CHECK(cache, "mla step needs a cache (allocate_cache)");
    LatentCache* lc = as_cache(cache, B);
    const int64_t pos = lc->pos;
    STRATA_CHECK(pos < lc->max_T, "mla cache full: step at position {} of a cache for {} tokens", pos, lc->max_T);
    const int64_t Cq = H_ * dqk_, Co = H_ * dv_, bstride = lc->max_T * W_;
    Arena& ar = *ctx.arena;
    float* q = ar.alloc(B * Cq);
    float* ckv = ar.alloc(B * W_);
    float* lat = ar.alloc(B * r_);
    float* c = ar.alloc(B * r_);
    float* rstd = ar.alloc(B);
    float* kpe = ar.alloc(B * dr_);
    float* pe = ar.alloc(B * H_ * dr_);
    float* qabs = ar.alloc(B * H_ * W_);  // [B, H, r + dr] = [q_lat_h, rope(q_rope_h)]
    float* olat = ar.alloc(B * H_ * r_);  // [B, H, r] attention output in latent space
    float* o = ar.alloc(B * Co);
    float *qa = nullptr, *qa_rstd = nullptr, *qan = nullptr;
    if (rq_) qa = ar.alloc(B * rq_), qa_rstd = ar.alloc(B), qan = ar.alloc(B * rq_);
    project_q(ctx, q, qa, qa_rstd, qan, x, B);
    linear_forward(ctx, ckv, x, w(wkva_), nullptr, B, D_, W_);
    copy_rows(ctx.device, lat, r_, ckv, W_, B, r_, Pairs::keep);
    STRATA_OP(ctx.device, rmsnorm_forward, c, rstd, lat, w(kv_norm_), B, r_, kLatentNormEps);
    copy_rows(ctx.device, kpe, dr_, ckv + r_, W_, B, dr_, pairs_in());
    // One token per sequence at the same position: [B, 1, H, dr] with pos0 = pos.
    rope(ctx, kpe, B, 1, 1, pos, false);
    rope_q(ctx, q, pe, B, 1, pos);
    float* rows = lc->rows.data();
    copy_rows(ctx.device, rows + pos * W_, bstride, c, r_, B, r_, Pairs::keep);
    copy_rows(ctx.device, rows + pos * W_ + r_, bstride, kpe, dr_, B, dr_, Pairs::keep);
    const float* wkvb = w(wkvb_);
    for (int64_t h = 0; h < H_; ++h)  // q_lat_h[B, r] = q_nope_h[B, dn] Wuk_h[dn, r]
      STRATA_OP(ctx.device, gemm, false, false, B, r_, dn_, 1.0f, q + h * dqk_, Cq, wkvb + h * (dn_ + dv_) * r_, r_,
                0.0f, qabs + h * W_, H_ * W_);
    copy_rows(ctx.device, qabs + r_, W_, q + dn_, dqk_, B * H_, dr_, Pairs::keep);
    STRATA_OP(ctx.device, attention_forward, olat, nullptr, qabs, rows, rows, B, 1, pos + 1, H_, 1, W_, r_, scale_,
              bstride, W_, bstride, W_, window_);
    for (int64_t h = 0; h < H_; ++h)  // o_h[B, dv] = olat_h[B, r] Wuv_h[dv, r]^T
      STRATA_OP(ctx.device, gemm, false, true, B, dv_, r_, 1.0f, olat + h * r_, H_ * r_,
                wkvb + (h * (dn_ + dv_) + dn_) * r_, r_, 0.0f, o + h * dv_, Co);
    linear_forward(ctx, y, o, w(wo_), nullptr, B, Co, D_);
    lc->pos = pos + 1;
  }

  std::unique_ptr<BlockRowCache> allocate_row_cache(const PoolSizes& sizes) const override {
    return PagePool::make(sizes, W_, 0, store_.device());
  }

  // x[n, D] -> y[n, D] over a RowBatch, step's absorbed form: every row's latent row [c, rope(kr)]
  // (at its own position) goes to its page slot first, then each row's absorbed query attends over
  // its sequence's pos + 1 latent rows through the paged decode kernel (MQA-style, v = the first r
  // channels of the same rows).
  void step_rows(Ctx& ctx, float* y, const float* x, const RowStep& rs, BlockRowCache* pools) override {
    STRATA_CHECK(ctx.arena, "mla step_rows needs ctx.arena");
    PagePool* pp = row_pools_as<PagePool>(pools, "mla", store_.device());
    STRATA_CHECK(pp->k_width == W_, "mla pools of another shape");
    const int64_t n = rs.n, Cq = H_ * dqk_, Co = H_ * dv_;
    if (n == 0) return;
    Arena& ar = *ctx.arena;
    float* q = ar.alloc(n * Cq);
    float* ckv = ar.alloc(n * W_);
    float* lat = ar.alloc(n * r_);
    float* c = ar.alloc(n * r_);
    float* rstd = ar.alloc(n);
    float* kpe = ar.alloc(n * dr_);
    float* pe = ar.alloc(n * H_ * dr_);
    float* qabs = ar.alloc(n * H_ * W_);
    float* olat = ar.alloc(n * H_ * r_);
    float* o = ar.alloc(n * Co);
    float *qa = nullptr, *qa_rstd = nullptr, *qan = nullptr;
    if (rq_) qa = ar.alloc(n * rq_), qa_rstd = ar.alloc(n), qan = ar.alloc(n * rq_);
    project_q(ctx, q, qa, qa_rstd, qan, x, n);
    linear_forward(ctx, ckv, x, w(wkva_), nullptr, n, D_, W_);
    copy_rows(ctx.device, lat, r_, ckv, W_, n, r_, Pairs::keep);
    STRATA_OP(ctx.device, rmsnorm_forward, c, rstd, lat, w(kv_norm_), n, r_, kLatentNormEps);
    copy_rows(ctx.device, kpe, dr_, ckv + r_, W_, n, dr_, pairs_in());
    float* rows = pp->k.data();
    for (int64_t i = 0; i < n; ++i) {
      const int64_t p = rs.pos[size_t(i)], slot = rs.kv_slot[size_t(i)];
      rope(ctx, kpe + i * dr_, 1, 1, 1, p, false);
      rope_q(ctx, q + i * Cq, pe + i * H_ * dr_, 1, 1, p);
      copy_rows(ctx.device, rows + slot * W_, W_, c + i * r_, r_, 1, r_, Pairs::keep);
      copy_rows(ctx.device, rows + slot * W_ + r_, W_, kpe + i * dr_, dr_, 1, dr_, Pairs::keep);
    }
    const float* wkvb = w(wkvb_);
    for (int64_t h = 0; h < H_; ++h)  // q_lat_h[n, r] = q_nope_h[n, dn] Wuk_h[dn, r]
      rows_gemm(ctx, false, n, r_, dn_, q + h * dqk_, Cq, wkvb + h * (dn_ + dv_) * r_, r_, qabs + h * W_, H_ * W_);
    copy_rows(ctx.device, qabs + r_, W_, q + dn_, dqk_, n * H_, dr_, Pairs::keep);
    STRATA_OP(ctx.device, attention_decode_paged, olat, nullptr, qabs, rows, rows, rs.row_pages, rs.row_lens, n, H_,
              1, W_, r_, scale_, W_, W_, pp->page_size, rs.pools.max_pages, pp->num_pages, window_,
              /*split_keys=*/ctx.row_tile <= 0);
    for (int64_t h = 0; h < H_; ++h)  // o_h[n, dv] = olat_h[n, r] Wuv_h[dv, r]^T
      rows_gemm(ctx, true, n, dv_, r_, olat + h * r_, H_ * r_, wkvb + (h * (dn_ + dv_) + dn_) * r_, r_, o + h * dv_,
                Co);
    linear_forward(ctx, y, o, w(wo_), nullptr, n, Co, D_);
  }

  // Multiply-adds x2 per token of the expanded form that training runs: the projections, plus q.k
  // (dqk) and p.v (dv) per head over the keys a token sees on average (mean_keys_per_query).
  double flops_per_token(int64_t T) const override {
    const double q = rq_ ? double(D_) * rq_ + double(rq_) * H_ * dqk_ : double(D_) * H_ * dqk_;
    const double proj = q + double(D_) * W_ + double(r_) * H_ * (dn_ + dv_) + double(H_) * dv_ * D_;
    return 2.0 * proj + 2.0 * double(H_) * double(dqk_ + dv_) * mean_keys_per_query(T, window_);
  }
  int64_t cache_bytes_per_token() const override { return int64_t(sizeof(float)) * W_; }

 private:
  struct Acts {
    const float* x = nullptr;                                    // block input [N, D]
    float *qa = nullptr, *qa_rstd = nullptr, *qan = nullptr;     // [N, rq], [N], [N, rq] (q_lora_rank > 0)
    float* q = nullptr;                                          // [N, H, dqk], rope part rotated
    float *lat = nullptr, *c = nullptr, *c_rstd = nullptr;       // latent [N, r] before / after norm, [N]
    float* kpe = nullptr;                                        // [N, dr] rotated shared key
    float *k = nullptr, *v = nullptr, *att = nullptr;            // [N, H, dqk], [N, H, dv], [N, H, dv]
    float* lse = nullptr;                                        // [B, H, T]
  };

  const float* w(ParamRef r) const { return store_.data(r); }
  float* g(ParamRef r) { return store_.grad(r); }
  Pairs pairs_in() const { return interleave_ ? Pairs::split : Pairs::keep; }
  Pairs pairs_out() const { return interleave_ ? Pairs::merge : Pairs::keep; }

  // q[N, H*dqk] from x[N, D], directly or through the normalised query latent (qa, qa_rstd, qan).
  void project_q(Ctx& ctx, float* q, float* qa, float* qa_rstd, float* qan, const float* x, int64_t N) {
    if (rq_ == 0) {
      linear_forward(ctx, q, x, w(wq_), nullptr, N, D_, H_ * dqk_);
      return;
    }
    linear_forward(ctx, qa, x, w(wqa_), nullptr, N, D_, rq_);
    STRATA_OP(ctx.device, rmsnorm_forward, qan, qa_rstd, qa, w(q_norm_), N, rq_, kLatentNormEps);
    linear_forward(ctx, q, qan, w(wqb_), nullptr, N, rq_, H_ * dqk_);
  }

  // RoPE (or its inverse) over contiguous x[B, T, H, dr], positions pos0 + t.
  void rope(Ctx& ctx, float* x, int64_t B, int64_t T, int64_t H, int64_t pos0, bool inverse) const {
    if (inverse)
      STRATA_OP(ctx.device, rope_backward, x, x, B, T, H, dr_, dr_, pos0, inv_freq_.data());
    else
      STRATA_OP(ctx.device, rope_forward, x, x, B, T, H, dr_, dr_, pos0, inv_freq_.data());
  }

  // Rotates the rope channels of q[B, T, H, dqk] in place (via pe[B*T*H, dr]), in HF's output order.
  void rope_q(Ctx& ctx, float* q, float* pe, int64_t B, int64_t T, int64_t pos0) const {
    copy_rows(ctx.device, pe, dr_, q + dn_, dqk_, B * T * H_, dr_, pairs_in());
    rope(ctx, pe, B, T, H_, pos0, false);
    copy_rows(ctx.device, q + dn_, dqk_, pe, dr_, B * T * H_, dr_, Pairs::keep);
  }

  // prefill: forward's cache (nullptr when there is none; else it must be empty).
  LatentCache* as_cache(BlockCache* cache, int64_t B, bool prefill = false) const {
    LatentCache* lc = prefill ? prefill_cache<LatentCache>(cache, "mla", B, store_.device())
                              : cache_as<LatentCache>(cache, "mla", B, store_.device());
    if (lc)
      STRATA_CHECK(lc->width == W_ && int64_t(lc->rows.size()) == B * lc->max_T * W_, "mla cache of another shape");
    return lc;
  }

  ParamStore& store_;
  int64_t D_, H_, rq_, r_, dn_, dr_, dv_, dqk_, W_;
  bool interleave_;
  float theta_, scale_ = 0.0f;
  int64_t window_;  // attention.window: sliding window (0 = full causal)
  std::vector<float> inv_freq_;  // [dr / 2] RoPE frequencies
  ParamRef wq_, wqa_, q_norm_, wqb_, wkva_, kv_norm_, wkvb_, wo_;
  SavedActs<Acts> saved_;
};

}  // namespace

std::unique_ptr<Block> make_latent_attention(const ModelConfig& cfg, ParamStore& store, const std::string& prefix) {
  return std::make_unique<LatentAttention>(cfg, store, prefix);
}

}  // namespace strata
