#include "models/trunk.h"

#include "core/error.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/norm.h"
#include "kernels/dispatch.h"

namespace strata {

int64_t ModelCache::bytes() const {
  int64_t b = 0;
  for (auto& c : blocks)
    if (c) b += c->bytes();
  return b;
}

void Trunk::declare(const ModelConfig& cfg, const std::string& pattern, ParamStore& ps, const std::string& prefix) {
  D_ = cfg.d_model;
  eps_ = cfg.norm_eps;
  for (size_t i = 0; i < pattern.size(); ++i) {
    std::string p = prefix + "layers." + std::to_string(i);
    Layer l;
    l.kind = pattern[i];
    l.norm = ps.add(p + ".norm.weight", {D_}, Init::constant(1.0f), false);
    l.block = make_block(l.kind, cfg, ps, p);
    layers_.push_back(std::move(l));
  }
  final_norm_ = ps.add(prefix + "norm_f.weight", {D_}, Init::constant(1.0f), false);
}

void Trunk::run_layers(Ctx& ctx, const ParamStore& ps, float* x, int64_t B, int64_t T, ModelCache* cache, bool save) {
  const int64_t D = D_, N = B * T;
  Arena& A = *ctx.arena;
  float* normed = A.alloc(N * D);
  float* rstd = A.alloc(N);
  float* y = A.alloc(N * D);
  if (save) {
    saved_.resid.clear();
    saved_.normed.clear();
    saved_.rstd.clear();
    saved_.B = B;
    saved_.T = T;
  }
  for (size_t l = 0; l < layers_.size(); ++l) {
    auto& L = layers_[l];
    if (save) {
      float* keep = A.alloc(N * D);
      STRATA_OP(ctx.device, copy_f32, keep, x, N * D);
      saved_.resid.push_back(keep);
      normed = A.alloc(N * D);
      rstd = A.alloc(N);
      saved_.normed.push_back(normed);
      saved_.rstd.push_back(rstd);
    }
    STRATA_OP(ctx.device, rmsnorm_forward, normed, rstd, x, ps.data(L.norm), N, D, eps_);
    L.block->forward(ctx, y, normed, B, T, cache ? cache->blocks[l].get() : nullptr);
    STRATA_OP(ctx.device, add_inplace, x, y, N * D);
  }
}

void Trunk::final_forward(Ctx& ctx, const ParamStore& ps, float* hn, const float* x, int64_t N, bool save) {
  float* rstd = ctx.arena->alloc(N);
  STRATA_OP(ctx.device, rmsnorm_forward, hn, rstd, x, ps.data(final_norm_), N, D_, eps_);
  if (save) {
    saved_.resid.push_back(const_cast<float*>(x));  // the trunk output, input of the final norm
    saved_.final_normed = hn;
    saved_.final_rstd = rstd;
    saved_.valid = true;
  }
}

float* Trunk::forward_train(Ctx& ctx, const ParamStore& ps, float* x, int64_t B, int64_t T) {
  STRATA_CHECK(ctx.training, "Trunk::forward_train needs ctx.training (it saves activations for backward)");
  run_layers(ctx, ps, x, B, T, nullptr, true);
  float* hn = ctx.arena->alloc(B * T * D_);
  final_forward(ctx, ps, hn, x, B * T, true);
  return hn;
}

void Trunk::backward(Ctx& ctx, ParamStore& ps, float* dx, const float* dhn, float loss_scale) {
  STRATA_CHECK(saved_.valid, "Trunk::backward without a preceding forward_train");
  saved_.valid = false;
  const int64_t D = D_, N = saved_.B * saved_.T;
  Arena& A = *ctx.arena;
  STRATA_OP(ctx.device, rmsnorm_backward, dx, ps.grad(final_norm_), dhn, saved_.resid.back(), ps.data(final_norm_),
            saved_.final_rstd, N, D);
  if (ctx.grads_final) ctx.grads_final->from(ps.info(final_norm_).offset);
  float* dnormed = A.alloc(N * D);
  float* dxn = A.alloc(N * D);
  const float outer_scale = ctx.loss_scale;
  ctx.loss_scale = outer_scale * loss_scale;
  for (int64_t l = int64_t(layers_.size()) - 1; l >= 0; --l) {
    auto& L = layers_[size_t(l)];
    // dx is the gradient of the residual stream after layer l; the block's output joins it by
    // addition, so dy = dx; its input gradient flows back through the norm and adds to dx.
    L.block->backward(ctx, dnormed, dx, saved_.B, saved_.T);
    STRATA_OP(ctx.device, rmsnorm_backward, dxn, ps.grad(L.norm), dnormed, saved_.resid[size_t(l)], ps.data(L.norm),
              saved_.rstd[size_t(l)], N, D);
    STRATA_OP(ctx.device, add_inplace, dx, dxn, N * D);
    // Layer l's parameters (its norm first, then its block's) end where layer l + 1's begin.
    if (ctx.grads_final) ctx.grads_final->from(ps.info(L.norm).offset);
  }
  ctx.loss_scale = outer_scale;
}

void Trunk::step(Ctx& ctx, const ParamStore& ps, float* x, float* hn, ModelCache& cache) {
  const int64_t D = D_, B = cache.batch;
  Arena& A = *ctx.arena;
  float* normed = A.alloc(B * D);
  float* rstd = A.alloc(B);
  float* y = A.alloc(B * D);
  for (size_t l = 0; l < layers_.size(); ++l) {
    auto& L = layers_[l];
    STRATA_OP(ctx.device, rmsnorm_forward, normed, rstd, x, ps.data(L.norm), B, D, eps_);
    L.block->step(ctx, y, normed, B, cache.blocks[l].get());
    STRATA_OP(ctx.device, add_inplace, x, y, B * D);
  }
  STRATA_OP(ctx.device, rmsnorm_forward, hn, rstd, x, ps.data(final_norm_), B, D, eps_);
}

void Trunk::step_rows(Ctx& ctx, const ParamStore& ps, float* x, const RowStep& rs, ModelRowCache& pools) {
  const int64_t D = D_, n = rs.n;
  STRATA_CHECK(pools.blocks.size() == layers_.size(), "row pools for {} layers used with {}", pools.blocks.size(),
               layers_.size());
  Arena& A = *ctx.arena;
  float* normed = A.alloc(n * D);
  float* rstd = A.alloc(n);
  float* y = A.alloc(n * D);
  for (size_t l = 0; l < layers_.size(); ++l) {
    auto& L = layers_[l];
    STRATA_OP(ctx.device, rmsnorm_forward, normed, rstd, x, ps.data(L.norm), n, D, eps_);
    L.block->step_rows(ctx, y, normed, rs, pools.blocks[l].get());
    STRATA_OP(ctx.device, add_inplace, x, y, n * D);
  }
}

ModelRowCache Trunk::allocate_row_cache(const PoolSizes& sizes) const {
  ModelRowCache c;
  c.sizes = sizes;
  for (auto& L : layers_) {
    c.blocks.push_back(L.block->allocate_row_cache(sizes));
    c.uses_pages |= L.kind == '*';
    c.uses_state_slots |= L.kind == 'M';
  }
  return c;
}

int64_t ModelRowCache::page_bytes() const {
  int64_t b = 0;
  for (auto& p : blocks)
    if (p) b += p->page_bytes();
  return b;
}

int64_t ModelRowCache::slot_bytes() const {
  int64_t b = 0;
  for (auto& p : blocks)
    if (p) b += p->slot_bytes();
  return b;
}

ModelCache Trunk::allocate_cache(int64_t B, int64_t max_T) const {
  ModelCache c;
  c.batch = B;
  c.max_T = max_T;
  for (auto& L : layers_) c.blocks.push_back(L.block->allocate_cache(B, max_T));
  return c;
}

double Trunk::flops_per_token(int64_t T) const {
  double f = 0;
  for (auto& L : layers_) f += L.block->flops_per_token(T);
  return f;
}

}  // namespace strata
