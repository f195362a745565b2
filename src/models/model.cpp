#include "models/model.h"

#include <cmath>
#include <cstring>

#include "core/device.h"
#include "core/error.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/loss.h"
#include "kernels/cpu/norm.h"
#include "kernels/dispatch.h"
#include "layers/linear.h"

namespace strata {

int64_t ModelCache::bytes() const {
  int64_t b = 0;
  for (auto& c : blocks)
    if (c) b += c->bytes();
  return b;
}

Model::Model(const ModelConfig& cfg, uint64_t seed) : cfg_(cfg) {
  add_parameters();
  params_.allocate(seed);
}

Model::Model(const ModelConfig& cfg, Uninitialised) : cfg_(cfg) {
  add_parameters();
  params_.allocate(0, false);
}

void Model::add_parameters() {
  resolve(cfg_);
  const int64_t D = cfg_.d_model, V = cfg_.vocab_size;
  embed_ = params_.add("embed_tokens.weight", {V, D}, Init::normal(cfg_.init_std), true);
  std::string pattern = layer_pattern();
  for (size_t i = 0; i < pattern.size(); ++i) {
    std::string prefix = "layers." + std::to_string(i);
    Layer l;
    l.kind = pattern[i];
    l.norm = params_.add(prefix + ".norm.weight", {D}, Init::constant(1.0f), false);
    l.block = make_block(l.kind, cfg_, params_, prefix);
    layers_.push_back(std::move(l));
  }
  final_norm_ = params_.add("norm_f.weight", {D}, Init::constant(1.0f), false);
  if (!cfg_.tie_embeddings) head_ = params_.add("lm_head.weight", {V, D}, Init::normal(cfg_.init_std), true);
}

std::string Model::layer_pattern() const {
  std::string p;
  for (int r = 0; r < cfg_.repeat; ++r) p += cfg_.pattern;
  return p;
}

namespace {
// ids, targets and logits cross the public API in host memory; on cuda they are staged through the
// arena. On cpu the host pointers are used as they are.
const int32_t* stage_ids(Ctx& ctx, const int32_t* host, int64_t n) {
  if (ctx.device == Device::cpu) return host;
  int32_t* dev = ctx.arena->alloc_int(size_t(n));
  copy_bytes(dev, ctx.device, host, Device::cpu, sizeof(int32_t) * size_t(n));
  return dev;
}
}  // namespace

void Model::head_forward(const Ctx& ctx, float* logits, const float* hn, int64_t N) const {
  const float* w = params_.data(head_.valid() ? head_ : embed_);
  linear_forward(ctx, logits, hn, w, nullptr, N, cfg_.d_model, cfg_.vocab_size);
}

// x[B, T, D] is the residual stream, updated in place through every layer. When `save`, each
// layer's input, normed input and rstd are kept in the arena for backward.
void Model::run_trunk(Ctx& ctx, float* x, int64_t B, int64_t T, ModelCache* cache, bool save) {
  const int64_t D = cfg_.d_model, N = B * T;
  Arena& A = *ctx.arena;
  float* normed = A.alloc(N * D);
  float* rstd = A.alloc(N);
  float* y = A.alloc(N * D);
  if (save) {
    saved_.resid.clear();
    saved_.normed.clear();
    saved_.rstd.clear();
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
    STRATA_OP(ctx.device, rmsnorm_forward, normed, rstd, x, params_.data(L.norm), N, D, cfg_.norm_eps);
    L.block->forward(ctx, y, normed, B, T, cache ? cache->blocks[l].get() : nullptr);
    STRATA_OP(ctx.device, add_inplace, x, y, N * D);
  }
}

float Model::forward_loss(Ctx& ctx, const int32_t* ids, const int32_t* targets, int64_t B, int64_t T) {
  STRATA_CHECK(ctx.training, "forward_loss needs ctx.training (it saves activations for backward)");
  const int64_t D = cfg_.d_model, V = cfg_.vocab_size, N = B * T;
  Arena& A = *ctx.arena;
  // ids and targets are host arrays; the copies in the arena (on ctx.device) outlive the caller's.
  int32_t* ids_keep = A.alloc_int(N);
  int32_t* tgt_keep = A.alloc_int(N);
  copy_bytes(ids_keep, ctx.device, ids, Device::cpu, sizeof(int32_t) * N);
  copy_bytes(tgt_keep, ctx.device, targets, Device::cpu, sizeof(int32_t) * N);
  float* x = A.alloc(N * D);
  STRATA_OP(ctx.device, embedding_forward, x, params_.data(embed_), ids_keep, N, V, D);
  run_trunk(ctx, x, B, T, nullptr, true);
  saved_.resid.push_back(x);  // the trunk output, input of the final norm
  saved_.final_normed = A.alloc(N * D);
  saved_.final_rstd = A.alloc(N);
  STRATA_OP(ctx.device, rmsnorm_forward, saved_.final_normed, saved_.final_rstd, x, params_.data(final_norm_), N, D,
            cfg_.norm_eps);
  saved_.dlogits = A.alloc(N * V);
  head_forward(ctx, saved_.dlogits, saved_.final_normed, N);
  float* losses = A.alloc(N);
  int64_t counted = 0;
  for (int64_t i = 0; i < N; ++i) counted += targets[i] >= 0;
  // The gradient is computed in place over the logits now, while they are hot in cache; backward
  // only rescales it.
  float loss = STRATA_OP_VALUE(ctx.device, softmax_xent_forward_backward, losses, saved_.dlogits, saved_.dlogits,
                               tgt_keep, N, V, counted ? 1.0f / float(counted) : 0.0f);
  aux_loss_ = 0.0;
  for (auto& L : layers_) aux_loss_ += L.block->aux_loss();
  saved_.valid = true;
  saved_.B = B;
  saved_.T = T;
  saved_.ids = ids_keep;
  return loss;
}

void Model::backward(Ctx& ctx, float loss_scale) {
  STRATA_CHECK(saved_.valid, "Model::backward without a preceding forward_loss");
  saved_.valid = false;
  const int64_t D = cfg_.d_model, V = cfg_.vocab_size, N = saved_.B * saved_.T;
  Arena& A = *ctx.arena;
  float* dlogits = saved_.dlogits;
  if (loss_scale != 1.0f) STRATA_OP(ctx.device, scale_inplace, dlogits, loss_scale, N * V);
  ParamRef head = head_.valid() ? head_ : embed_;
  float* dnormed = A.alloc(N * D);
  linear_backward(ctx, dnormed, params_.grad(head), nullptr, dlogits, saved_.final_normed, params_.data(head), N, D, V,
                  false);
  float* dx = A.alloc(N * D);
  STRATA_OP(ctx.device, rmsnorm_backward, dx, params_.grad(final_norm_), dnormed, saved_.resid.back(),
            params_.data(final_norm_), saved_.final_rstd, N, D);
  float* dxn = A.alloc(N * D);
  const float outer_scale = ctx.loss_scale;
  ctx.loss_scale = outer_scale * loss_scale;
  for (int64_t l = int64_t(layers_.size()) - 1; l >= 0; --l) {
    auto& L = layers_[l];
    // dx is the gradient of the residual stream after layer l; the block's output joins it by
    // addition, so dy = dx; its input gradient flows back through the norm and adds to dx.
    L.block->backward(ctx, dnormed, dx, saved_.B, saved_.T);
    STRATA_OP(ctx.device, rmsnorm_backward, dxn, params_.grad(L.norm), dnormed, saved_.resid[l],
              params_.data(L.norm), saved_.rstd[l], N, D);
    STRATA_OP(ctx.device, add_inplace, dx, dxn, N * D);
  }
  ctx.loss_scale = outer_scale;
  STRATA_OP(ctx.device, embedding_backward, params_.grad(embed_), dx, saved_.ids, N, D);
}

void Model::forward_logits(Ctx& ctx, float* logits, const int32_t* ids, int64_t B, int64_t T, ModelCache* cache) {
  const int64_t N = B * T, V = cfg_.vocab_size;
  float* out = ctx.device == Device::cpu ? logits : ctx.arena->alloc(N * V);
  logits_on_device(ctx, out, stage_ids(ctx, ids, N), B, T, cache);
  if (out != logits) copy_bytes(logits, Device::cpu, out, ctx.device, sizeof(float) * N * V);
}

// ids_dev[B, T] and logits_dev[B, T, V] in ctx.device memory.
void Model::logits_on_device(Ctx& ctx, float* logits_dev, const int32_t* ids_dev, int64_t B, int64_t T,
                             ModelCache* cache) {
  const int64_t D = cfg_.d_model, V = cfg_.vocab_size, N = B * T;
  if (cache) {
    STRATA_CHECK(cache->pos == 0, "prefill needs an empty cache (pos {})", cache->pos);
    STRATA_CHECK(cache->batch == B && T <= cache->max_T, "prefill of [{}, {}] into a cache for [{}, {}]", B, T,
                 cache->batch, cache->max_T);
  }
  bool was_training = ctx.training;
  ctx.training = false;
  Arena& A = *ctx.arena;
  float* x = A.alloc(N * D);
  STRATA_OP(ctx.device, embedding_forward, x, params_.data(embed_), ids_dev, N, V, D);
  run_trunk(ctx, x, B, T, cache, false);
  float* hn = A.alloc(N * D);
  float* rstd = A.alloc(N);
  STRATA_OP(ctx.device, rmsnorm_forward, hn, rstd, x, params_.data(final_norm_), N, D, cfg_.norm_eps);
  head_forward(ctx, logits_dev, hn, N);
  ctx.training = was_training;
  if (cache) cache->pos = T;
}

void Model::prefill(Ctx& ctx, float* logits, const int32_t* ids, int64_t B, int64_t T, ModelCache& cache) {
  const int64_t D = cfg_.d_model, V = cfg_.vocab_size, N = B * T;
  STRATA_CHECK(T > 0, "prefill of an empty prompt");
  STRATA_CHECK(cache.pos == 0, "prefill needs an empty cache (pos {})", cache.pos);
  STRATA_CHECK(cache.batch == B && T <= cache.max_T, "prefill of [{}, {}] into a cache for [{}, {}]", B, T, cache.batch,
               cache.max_T);
  bool was_training = ctx.training;
  ctx.training = false;
  Arena& A = *ctx.arena;
  float* x = A.alloc(N * D);
  STRATA_OP(ctx.device, embedding_forward, x, params_.data(embed_), stage_ids(ctx, ids, N), N, V, D);
  run_trunk(ctx, x, B, T, &cache, false);
  float* last = A.alloc(B * D);  // row T - 1 of each sequence
  for (int64_t b = 0; b < B; ++b)
    copy_bytes(last + b * D, ctx.device, x + (b * T + T - 1) * D, ctx.device, sizeof(float) * D);
  float* hn = A.alloc(B * D);
  float* rstd = A.alloc(B);
  STRATA_OP(ctx.device, rmsnorm_forward, hn, rstd, last, params_.data(final_norm_), B, D, cfg_.norm_eps);
  float* out = ctx.device == Device::cpu ? logits : A.alloc(B * V);
  head_forward(ctx, out, hn, B);
  if (out != logits) copy_bytes(logits, Device::cpu, out, ctx.device, sizeof(float) * B * V);
  ctx.training = was_training;
  cache.pos = T;
}

void Model::step(Ctx& ctx, float* logits, const int32_t* ids, ModelCache& cache) {
  const int64_t V = cfg_.vocab_size, B = cache.batch;
  const int32_t* ids_dev = stage_ids(ctx, ids, B);
  float* out = ctx.device == Device::cpu ? logits : ctx.arena->alloc(B * V);
  step_on_device(ctx, out, ids_dev, cache);
  if (out != logits) copy_bytes(logits, Device::cpu, out, ctx.device, sizeof(float) * B * V);
}

// Queues only device work (no host <-> device copy, no synchronisation) so that a CUDA graph can
// record it; the host-side cache positions are the only state it changes outside ctx.device.
void Model::step_on_device(Ctx& ctx, float* logits_dev, const int32_t* ids_dev, ModelCache& cache) {
  const int64_t D = cfg_.d_model, V = cfg_.vocab_size, B = cache.batch;
  STRATA_CHECK(cache.pos < cache.max_T, "cache full: {} tokens", cache.max_T);
  Arena& A = *ctx.arena;
  float* x = A.alloc(B * D);
  float* normed = A.alloc(B * D);
  float* rstd = A.alloc(B);
  float* y = A.alloc(B * D);
  STRATA_OP(ctx.device, embedding_forward, x, params_.data(embed_), ids_dev, B, V, D);
  for (size_t l = 0; l < layers_.size(); ++l) {
    auto& L = layers_[l];
    STRATA_OP(ctx.device, rmsnorm_forward, normed, rstd, x, params_.data(L.norm), B, D, cfg_.norm_eps);
    L.block->step(ctx, y, normed, B, cache.blocks[l].get());
    STRATA_OP(ctx.device, add_inplace, x, y, B * D);
  }
  STRATA_OP(ctx.device, rmsnorm_forward, normed, rstd, x, params_.data(final_norm_), B, D, cfg_.norm_eps);
  head_forward(ctx, logits_dev, normed, B);
  ++cache.pos;
}

ModelCache Model::allocate_cache(int64_t B, int64_t max_T) const {
  ModelCache c;
  c.batch = B;
  c.max_T = max_T;
  for (auto& L : layers_) c.blocks.push_back(L.block->allocate_cache(B, max_T));
  return c;
}

float Model::eval_loss(Ctx& ctx, const int32_t* ids, const int32_t* targets, int64_t B, int64_t T) {
  const int64_t N = B * T, V = cfg_.vocab_size;
  float* logits = ctx.arena->alloc(N * V);
  float* losses = ctx.arena->alloc(N);
  logits_on_device(ctx, logits, stage_ids(ctx, ids, N), B, T, nullptr);
  return STRATA_OP_VALUE(ctx.device, softmax_xent_forward, losses, logits, stage_ids(ctx, targets, N), N, V);
}

double Model::flops_per_token(int64_t T) const {
  double f = 2.0 * cfg_.d_model * cfg_.vocab_size;  // head
  for (auto& L : layers_) f += L.block->flops_per_token(T);
  return f;
}

}  // namespace strata
