// Attention block (pattern char '*'): projections, RoPE, flash attention, output projection.
// q, k and v are three GEMMs over row blocks of their own weights, so each lands contiguous in the
// [B, T, H, hd] layout the attention kernels read, with no split copies.
#include "layers/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/rope.h"
#include "kernels/dispatch.h"
#include "layers/block_state.h"
#include "layers/linear.h"
#include "layers/row_pools.h"
#include "layers/rope_freq.h"

namespace strata {
namespace {

class Attention final : public Block {
 public:
  Attention(const ModelConfig& cfg, ParamStore& store, const std::string& prefix)
      : store_(store),
        D_(cfg.d_model),
        Hq_(cfg.attention.heads),
        Hkv_(cfg.attention.kv_heads),
        hd_(cfg.attention.head_dim),
        rot_(!cfg.attention.rope ? 0 : cfg.attention.rope_dims > 0 ? cfg.attention.rope_dims : cfg.attention.head_dim),
        window_(cfg.attention.window) {
    STRATA_CHECK(D_ > 0, "{}: d_model must be positive (got {})", prefix, D_);
    STRATA_CHECK(Hq_ > 0 && Hkv_ > 0 && Hq_ % Hkv_ == 0,
                 "{}: attention.kv_heads ({}) must be positive and divide attention.heads ({}); call resolve()", prefix,
                 Hkv_, Hq_);
    STRATA_CHECK(hd_ > 0, "{}: attention.head_dim must be positive (got {})", prefix, hd_);
    if (window_ < 0)
      throw InputError(fmt::format("{}: attention.window must be >= 0 (0 = full causal; got {})", prefix, window_));
    STRATA_CHECK(rot_ % 2 == 0 && rot_ <= hd_,
                 "{}: attention.rope_dims ({}) must be even and at most head_dim ({}): RoPE rotates pairs of channels",
                 prefix, rot_, hd_);
    if (rot_ > 0) inv_freq_ = rope_inv_freq(cfg.attention, rot_);
    const int64_t n_layers = std::max<int64_t>(1, int64_t(cfg.pattern.size()) * cfg.repeat);
    // GPT-2 scaled init of the projection that writes into the residual stream.
    const float out_std = cfg.init_std / std::sqrt(2.0f * float(n_layers));
    wq_ = store.add(prefix + ".q_proj.weight", {Hq_ * hd_, D_}, Init::normal(cfg.init_std), true);
    wk_ = store.add(prefix + ".k_proj.weight", {Hkv_ * hd_, D_}, Init::normal(cfg.init_std), true);
    wv_ = store.add(prefix + ".v_proj.weight", {Hkv_ * hd_, D_}, Init::normal(cfg.init_std), true);
    wo_ = store.add(prefix + ".o_proj.weight", {D_, Hq_ * hd_}, Init::normal(out_std), true);
  }

  std::string kind() const override { return "attention"; }

  // x[B, T, D] -> y[B, T, D]. Training saves x, post-RoPE q, k, v, the attention output and its
  // log-sum-exp (backward recomputes the probabilities from them). With a cache (prefill), the
  // post-RoPE keys and values of all T positions are written to it.
  void forward(Ctx& ctx, float* y, const float* x, int64_t B, int64_t T, BlockCache* cache) override {
    STRATA_CHECK(ctx.arena, "attention forward needs ctx.arena");
    AttentionCache* ac = as_cache(cache, B, /*prefill=*/true);
    if (ac) STRATA_CHECK(T <= ac->max_T, "attention prefill of {} tokens into a cache of {}", T, ac->max_T);
    saved_.clear();
    const int64_t N = B * T, Cq = Hq_ * hd_, Ck = Hkv_ * hd_;
    Acts a = project_qkv(ctx, kept_input(ctx, x, N * D_), N);
    a.lse = ctx.training ? ctx.arena->alloc(B * Hq_ * T) : nullptr;
    if (N > 0) {
      rotate(ctx, a.q, B, T, Hq_, 0, false);
      rotate(ctx, a.k, B, T, Hkv_, 0, false);
      STRATA_OP(ctx.device, attention_forward, a.att, a.lse, a.q, a.k, a.v, B, T, T, Hq_, Hkv_, hd_, hd_, scale(),
                T * Ck, Ck, T * Ck, Ck, window_);
      linear_forward(ctx, y, a.att, w(wo_), nullptr, N, Cq, D_);
    }
    if (ac) {
      for (int64_t b = 0; b < B && T > 0; ++b) {
        STRATA_OP(ctx.device, copy_f32, ac->k.data() + b * ac->max_T * Ck, a.k + b * T * Ck, T * Ck);
        STRATA_OP(ctx.device, copy_f32, ac->v.data() + b * ac->max_T * Ck, a.v + b * T * Ck, T * Ck);
      }
      ac->pos = T;
    }
    if (ctx.training) saved_.keep(a, B, T);
  }

  // dy[B, T, D] -> dx[B, T, D] (assigned); weight grads accumulated.
  void backward(Ctx& ctx, float* dx, const float* dy, int64_t B, int64_t T) override {
    const Acts& a = saved_.take("attention", B, T);
    const int64_t N = B * T, Cq = Hq_ * hd_, Ck = Hkv_ * hd_;
    if (N == 0) return;
    Arena& ar = *ctx.arena;
    float* datt = ar.alloc(N * Cq);
    float* dq = ar.alloc(N * Cq);
    float* dk = ar.alloc(N * Ck);
    float* dv = ar.alloc(N * Ck);
    linear_backward(ctx, datt, g(wo_), nullptr, dy, a.att, w(wo_), N, Cq, D_, false);
    STRATA_OP(ctx.device, attention_backward, dq, dk, dv, datt, a.q, a.k, a.v, a.att, a.lse, B, T, Hq_, Hkv_, hd_, hd_,
              scale(), window_);
    // The gradients w.r.t. the pre-RoPE q and k are the inverse rotation of those w.r.t. the rotated ones.
    rotate(ctx, dq, B, T, Hq_, 0, true);
    rotate(ctx, dk, B, T, Hkv_, 0, true);
    linear_backward(ctx, dx, g(wq_), nullptr, dq, a.x, w(wq_), N, D_, Cq, false);
    linear_backward(ctx, dx, g(wk_), nullptr, dk, a.x, w(wk_), N, D_, Ck, true);
    linear_backward(ctx, dx, g(wv_), nullptr, dv, a.x, w(wv_), N, D_, Ck, true);
  }

  std::unique_ptr<BlockCache> allocate_cache(int64_t B, int64_t max_T) const override {
    STRATA_CHECK(B >= 0 && max_T >= 0, "attention cache for batch {} and {} tokens", B, max_T);
    auto c = std::make_unique<AttentionCache>();
    c->batch = B;
    c->max_T = max_T;
    c->k = DeviceArray<float>::zeros(size_t(B * max_T * Hkv_ * hd_), store_.device());
    c->v = DeviceArray<float>::zeros(size_t(B * max_T * Hkv_ * hd_), store_.device());
    return c;
  }

  // x[B, D] -> y[B, D]: the token at position cache->pos. Its rotated key and value are appended to
  // the cache, then its query attends over the pos + 1 cached positions (the last window_ of them with
  // a sliding window: the cache still keeps every position). Temporaries come from
  // ctx.arena; any saved training state is left alone.
  void step(Ctx& ctx, float* y, const float* x, int64_t B, BlockCache* cache) override {
    STRATA_CHECK(ctx.arena, "attention step needs ctx.arena");
    STRATA_CHECK(cache, "attention step needs a cache (allocate_cache)");
    AttentionCache* ac = as_cache(cache, B);
    const int64_t pos = ac->pos;
    STRATA_CHECK(pos < ac->max_T, "attention cache full: step at position {} of a cache for {} tokens", pos,
                 ac->max_T);
    const int64_t Cq = Hq_ * hd_, Ck = Hkv_ * hd_;
    const Acts a = project_qkv(ctx, x, B);
    float *q = a.q, *k = a.k, *v = a.v, *att = a.att;
    // One token per sequence at the same position: [B, 1, H, hd] with pos0 = pos.
    rotate(ctx, q, B, 1, Hq_, pos, false);
    rotate(ctx, k, B, 1, Hkv_, pos, false);
    const int64_t bstride = ac->max_T * Ck;
    STRATA_OP(ctx.device, copy_strided, ac->k.data() + pos * Ck, bstride, k, Ck, B, Ck);
    STRATA_OP(ctx.device, copy_strided, ac->v.data() + pos * Ck, bstride, v, Ck, B, Ck);
    STRATA_OP(ctx.device, attention_forward, att, nullptr, q, ac->k.data(), ac->v.data(), B, 1, pos + 1, Hq_, Hkv_,
              hd_, hd_, scale(), bstride, Ck, bstride, Ck, window_);
    linear_forward(ctx, y, att, w(wo_), nullptr, B, Cq, D_);
    ac->pos = pos + 1;
  }

  std::unique_ptr<BlockRowCache> allocate_row_cache(const PoolSizes& sizes) const override {
    return PagePool::make(sizes, Hkv_ * hd_, Hkv_ * hd_, store_.device());
  }

  // x[n, D] -> y[n, D] over a RowBatch: the projections of all rows (as step's), RoPE at each row's
  // own position, every row's key and value written to its page slot first, then each row's query
  // attends over its sequence's pos + 1 keys (the last window_ of them with a sliding window) through
  // the paged decode kernel (one "sequence" per row, with its sequence's page table row), so rows of
  // one chunk see each other causally. Pages stay allocated for the whole sequence, as step's cache.
  // With row tiles (batch invariance) the CUDA kernel keeps one pass over the keys per query.
  void step_rows(Ctx& ctx, float* y, const float* x, const RowStep& rs, BlockRowCache* pools) override {
    STRATA_CHECK(ctx.arena, "attention step_rows needs ctx.arena");
    PagePool* pp = row_pools_as<PagePool>(pools, "attention", store_.device());
    STRATA_CHECK(pp->k_width == Hkv_ * hd_ && pp->v_width == Hkv_ * hd_, "attention pools of another shape");
    const int64_t n = rs.n, Cq = Hq_ * hd_, Ck = Hkv_ * hd_;
    if (n == 0) return;
    const Acts a = project_qkv(ctx, x, n);
    float *q = a.q, *k = a.k, *v = a.v, *att = a.att;
    for (int64_t i = 0; i < n; ++i) {
      // One row at a time: the rotation of a row never depends on how its sequence was chunked.
      rotate(ctx, q + i * Cq, 1, 1, Hq_, rs.pos[size_t(i)], false);
      rotate(ctx, k + i * Ck, 1, 1, Hkv_, rs.pos[size_t(i)], false);
      const int64_t slot = rs.kv_slot[size_t(i)];
      STRATA_OP(ctx.device, copy_f32, pp->k.data() + slot * Ck, k + i * Ck, Ck);
      STRATA_OP(ctx.device, copy_f32, pp->v.data() + slot * Ck, v + i * Ck, Ck);
    }
    STRATA_OP(ctx.device, attention_decode_paged, att, nullptr, q, pp->k.data(), pp->v.data(), rs.row_pages,
              rs.row_lens, n, Hq_, Hkv_, hd_, hd_, scale(), Ck, Ck, pp->page_size, rs.pools.max_pages, pp->num_pages,
              window_, /*split_keys=*/ctx.row_tile <= 0);
    linear_forward(ctx, y, att, w(wo_), nullptr, n, Cq, D_);
  }

  // Multiply-adds x2 per token: the four projections, plus q.k and p.v over the keys a token sees,
  // averaged over a causal sequence of T tokens (mean_keys_per_query), as the kernels compute them.
  double flops_per_token(int64_t T) const override {
    const double proj = 2.0 * double(D_) * double(hd_) * double(2 * Hq_ + 2 * Hkv_);
    return proj + 2.0 * 2.0 * double(Hq_) * double(hd_) * mean_keys_per_query(T, window_);
  }
  int64_t cache_bytes_per_token() const override { return int64_t(sizeof(float)) * 2 * Hkv_ * hd_; }

 private:
  struct Acts {
    const float* x = nullptr;            // block input [N, D]
    float *q = nullptr, *att = nullptr;  // [N, Hq*hd] (q after RoPE)
    float *k = nullptr, *v = nullptr;    // [N, Hkv*hd] (k after RoPE)
    float* lse = nullptr;                // [B, Hq, T]
  };

  // The start of forward, step and step_rows: q, k, v of n rows of x (before RoPE) and room for the
  // attention output, in ctx.arena.
  Acts project_qkv(Ctx& ctx, const float* x, int64_t n) {
    const int64_t Cq = Hq_ * hd_, Ck = Hkv_ * hd_;
    Arena& ar = *ctx.arena;
    Acts a;
    a.x = x;
    a.q = ar.alloc(n * Cq);
    a.k = ar.alloc(n * Ck);
    a.v = ar.alloc(n * Ck);
    a.att = ar.alloc(n * Cq);
    if (n > 0) {
      linear_forward(ctx, a.q, x, w(wq_), nullptr, n, D_, Cq);
      linear_forward(ctx, a.k, x, w(wk_), nullptr, n, D_, Ck);
      linear_forward(ctx, a.v, x, w(wv_), nullptr, n, D_, Ck);
    }
    return a;
  }

  const float* w(ParamRef r) const { return store_.data(r); }
  float scale() const { return 1.0f / std::sqrt(float(hd_)); }
  // RoPE in place on x[B, T, H, hd] at positions pos0.. (inverse: its transpose, for gradients); a
  // no-op without positional encoding.
  void rotate(Ctx& ctx, float* x, int64_t B, int64_t T, int64_t H, int64_t pos0, bool inverse) const {
    if (rot_ == 0) return;
    if (inverse)
      STRATA_OP(ctx.device, rope_backward, x, x, B, T, H, hd_, rot_, pos0, inv_freq_.data());
    else
      STRATA_OP(ctx.device, rope_forward, x, x, B, T, H, hd_, rot_, pos0, inv_freq_.data());
  }
  float* g(ParamRef r) { return store_.grad(r); }

  // prefill: forward's cache (nullptr when there is none; else it must be empty).
  AttentionCache* as_cache(BlockCache* cache, int64_t B, bool prefill = false) const {
    AttentionCache* ac = prefill ? prefill_cache<AttentionCache>(cache, "attention", B, store_.device())
                                 : cache_as<AttentionCache>(cache, "attention", B, store_.device());
    if (ac) STRATA_CHECK(int64_t(ac->k.size()) == B * ac->max_T * Hkv_ * hd_, "attention cache of another shape");
    return ac;
  }

  ParamStore& store_;
  int64_t D_, Hq_, Hkv_, hd_;
  int64_t rot_;                 // channels RoPE rotates per head; 0 = no positional encoding
  int64_t window_;              // attention.window: sliding window (0 = full causal)
  std::vector<float> inv_freq_;  // [rot_ / 2], attention.rope_type's table
  ParamRef wq_, wk_, wv_, wo_;
  SavedActs<Acts> saved_;
};

}  // namespace

std::unique_ptr<Block> make_attention(const ModelConfig& cfg, ParamStore& store, const std::string& prefix) {
  return std::make_unique<Attention>(cfg, store, prefix);
}

}  // namespace strata
