#include "models/continuous_model.h"

#include <cstring>

#include "core/error.h"
#include "layers/linear.h"

namespace strata {

void ContinuousModel::declare(ModelConfig cfg, const std::string& pattern, int64_t in_dim, int64_t out_dim,
                              ParamStore& ps, const std::string& prefix) {
  resolve(cfg);
  STRATA_CHECK(in_dim > 0 && out_dim > 0, "continuous model '{}': in_dim {} and out_dim {} must be positive", prefix,
               in_dim, out_dim);
  in_ = in_dim, out_ = out_dim, D_ = cfg.d_model;
  in_w_ = ps.add(prefix + "in_proj.weight", {D_, in_}, Init::normal(cfg.init_std), true);
  in_b_ = ps.add(prefix + "in_proj.bias", {D_}, Init::zeros(), false);
  trunk_.declare(cfg, pattern, ps, prefix);
  head_w_ = ps.add(prefix + "head.weight", {out_, D_}, Init::normal(cfg.init_std), true);
  head_b_ = ps.add(prefix + "head.bias", {out_}, Init::zeros(), false);
}

void ContinuousModel::forward_train(Ctx& ctx, const ParamStore& ps, float* out, const float* in, int64_t B, int64_t T) {
  STRATA_CHECK(ctx.device == Device::cpu, "ContinuousModel runs on cpu only");
  const int64_t N = B * T;
  Arena& A = *ctx.arena;
  float* in_keep = A.alloc(N * in_);
  std::memcpy(in_keep, in, sizeof(float) * size_t(N * in_));
  float* x = A.alloc(N * D_);
  linear_forward(ctx, x, in_keep, ps.data(in_w_), ps.data(in_b_), N, in_, D_);
  float* hn = trunk_.forward_train(ctx, ps, x, B, T);
  linear_forward(ctx, out, hn, ps.data(head_w_), ps.data(head_b_), N, D_, out_);
  saved_ = {true, N, in_keep, hn};
}

void ContinuousModel::backward(Ctx& ctx, ParamStore& ps, float* din, const float* dout) {
  STRATA_CHECK(saved_.valid, "ContinuousModel::backward without a preceding forward_train");
  saved_.valid = false;
  const int64_t N = saved_.N;
  Arena& A = *ctx.arena;
  float* dhn = A.alloc(N * D_);
  linear_backward(ctx, dhn, ps.grad(head_w_), ps.grad(head_b_), dout, saved_.hn, ps.data(head_w_), N, D_, out_);
  float* dx = A.alloc(N * D_);
  trunk_.backward(ctx, ps, dx, dhn);
  linear_backward(ctx, din, ps.grad(in_w_), ps.grad(in_b_), dx, saved_.in, ps.data(in_w_), N, in_, D_);
}

void ContinuousModel::forward(Ctx& ctx, const ParamStore& ps, float* out, const float* in, int64_t B, int64_t T,
                              ModelCache* cache) {
  STRATA_CHECK(ctx.device == Device::cpu, "ContinuousModel runs on cpu only");
  const int64_t N = B * T;
  const bool was_training = ctx.training;
  ctx.training = false;
  Arena& A = *ctx.arena;
  float* x = A.alloc(N * D_);
  linear_forward(ctx, x, in, ps.data(in_w_), ps.data(in_b_), N, in_, D_);
  trunk_.run_layers(ctx, ps, x, B, T, cache, false);
  float* hn = A.alloc(N * D_);
  trunk_.final_forward(ctx, ps, hn, x, N, false);
  linear_forward(ctx, out, hn, ps.data(head_w_), ps.data(head_b_), N, D_, out_);
  ctx.training = was_training;
  if (cache) cache->pos = T;
}

void ContinuousModel::step(Ctx& ctx, const ParamStore& ps, float* out, const float* in, ModelCache& cache) {
  const int64_t B = cache.batch;
  STRATA_CHECK(cache.pos < cache.max_T, "cache full: {} steps", cache.max_T);
  Arena& A = *ctx.arena;
  float* x = A.alloc(B * D_);
  float* hn = A.alloc(B * D_);
  linear_forward(ctx, x, in, ps.data(in_w_), ps.data(in_b_), B, in_, D_);
  trunk_.step(ctx, ps, x, hn, cache);
  linear_forward(ctx, out, hn, ps.data(head_w_), ps.data(head_b_), B, D_, out_);
  ++cache.pos;
}

}  // namespace strata
