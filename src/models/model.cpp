#include "models/model.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "core/device.h"
#include "core/error.h"
#include "kernels/cpu/argmax.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/loss.h"
#include "kernels/cpu/norm.h"
#include "kernels/dispatch.h"
#include "layers/linear.h"

namespace strata {

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
  trunk_.declare(cfg_, layer_pattern(), params_);
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

float Model::forward_loss(Ctx& ctx, const int32_t* ids, const int32_t* targets, int64_t B, int64_t T) {
  STRATA_CHECK(ctx.training, "forward_loss needs ctx.training (it saves activations for backward)");
  if (quant_)
    throw InputError(fmt::format("this model holds int{} weights (loaded quantised), which run inference only: train "
                                 "from the fp32 checkpoint",
                                 quant_->bits()));
  const int64_t D = cfg_.d_model, V = cfg_.vocab_size, N = B * T;
  Arena& A = *ctx.arena;
  // ids and targets are host arrays; the copies in the arena (on ctx.device) outlive the caller's.
  int32_t* ids_keep = A.alloc_int(N);
  int32_t* tgt_keep = A.alloc_int(N);
  copy_bytes(ids_keep, ctx.device, ids, Device::cpu, sizeof(int32_t) * N);
  copy_bytes(tgt_keep, ctx.device, targets, Device::cpu, sizeof(int32_t) * N);
  float* x = A.alloc(N * D);
  STRATA_OP(ctx.device, embedding_forward, x, params_.data(embed_), ids_keep, N, V, D);
  saved_.final_normed = trunk_.forward_train(ctx, params_, x, B, T);
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
  for (auto& L : trunk_.layers()) aux_loss_ += L.block->aux_loss();
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
  trunk_.backward(ctx, params_, dx, dnormed, loss_scale);
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
  use_quantized(ctx);
  bool was_training = ctx.training;
  ctx.training = false;
  Arena& A = *ctx.arena;
  float* x = A.alloc(N * D);
  STRATA_OP(ctx.device, embedding_forward, x, params_.data(embed_), ids_dev, N, V, D);
  trunk_.run_layers(ctx, params_, x, B, T, cache, false);
  float* hn = A.alloc(N * D);
  trunk_.final_forward(ctx, params_, hn, x, N, false);
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
  use_quantized(ctx);
  bool was_training = ctx.training;
  ctx.training = false;
  Arena& A = *ctx.arena;
  float* x = A.alloc(N * D);
  STRATA_OP(ctx.device, embedding_forward, x, params_.data(embed_), stage_ids(ctx, ids, N), N, V, D);
  trunk_.run_layers(ctx, params_, x, B, T, &cache, false);
  float* last = A.alloc(B * D);  // row T - 1 of each sequence
  for (int64_t b = 0; b < B; ++b)
    copy_bytes(last + b * D, ctx.device, x + (b * T + T - 1) * D, ctx.device, sizeof(float) * D);
  float* hn = A.alloc(B * D);
  trunk_.final_forward(ctx, params_, hn, last, B, false);
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
  use_quantized(ctx);
  Arena& A = *ctx.arena;
  float* x = A.alloc(B * D);
  float* hn = A.alloc(B * D);
  STRATA_OP(ctx.device, embedding_forward, x, params_.data(embed_), ids_dev, B, V, D);
  trunk_.step(ctx, params_, x, hn, cache);
  head_forward(ctx, logits_dev, hn, B);
  ++cache.pos;
}

void Model::use_quantized(Ctx& ctx) {
  if (quant_) quant_->follow_store(params_);
  ctx.quant = quant_.get();
}

ModelCache Model::allocate_cache(int64_t B, int64_t max_T) const { return trunk_.allocate_cache(B, max_T); }

void Model::step_rows(Ctx& ctx, float* logits, const RowBatch& rb, ModelRowCache& pools) {
  use_quantized(ctx);
  const int64_t D = cfg_.d_model, V = cfg_.vocab_size;
  const RowStep rs = prepare_rows(ctx, rb, pools.sizes, V, pools.uses_pages, pools.uses_state_slots);
  const int64_t n = rs.n, L = int64_t(rb.logits_rows.size());
  if (n == 0) return;
  bool was_training = ctx.training;
  ctx.training = false;
  Arena& A = *ctx.arena;
  float* x = A.alloc(n * D);
  STRATA_OP(ctx.device, embedding_forward, x, params_.data(embed_), stage_ids(ctx, rb.ids.data(), n), n, V, D);
  trunk_.step_rows(ctx, params_, x, rs, pools);
  if (L > 0) {
    // The final norm and the head only for the rows whose logits are wanted.
    float* sel = A.alloc(L * D);
    for (int64_t j = 0; j < L; ++j)
      copy_bytes(sel + j * D, ctx.device, x + int64_t(rb.logits_rows[size_t(j)]) * D, ctx.device, sizeof(float) * D);
    float* hn = A.alloc(L * D);
    trunk_.final_forward(ctx, params_, hn, sel, L, false);
    float* out = ctx.device == Device::cpu ? logits : A.alloc(L * V);
    head_forward(ctx, out, hn, L);
    if (out != logits) copy_bytes(logits, Device::cpu, out, ctx.device, sizeof(float) * L * V);
  }
  ctx.training = was_training;
}

float Model::eval_loss(Ctx& ctx, const int32_t* ids, const int32_t* targets, int64_t B, int64_t T, int32_t* argmax) {
  const int64_t N = B * T, V = cfg_.vocab_size;
  float* logits = ctx.arena->alloc(N * V);
  float* losses = ctx.arena->alloc(N);
  logits_on_device(ctx, logits, stage_ids(ctx, ids, N), B, T, nullptr);
  float loss = STRATA_OP_VALUE(ctx.device, softmax_xent_forward, losses, logits, stage_ids(ctx, targets, N), N, V);
  if (argmax) {
    std::vector<float> host;
    if (ctx.device != Device::cpu) {
      host.resize(size_t(N * V));
      copy_bytes(host.data(), Device::cpu, logits, ctx.device, sizeof(float) * N * V);
    }
    cpu::argmax_rows(argmax, host.empty() ? logits : host.data(), N, V);
  }
  return loss;
}

double Model::flops_per_token(int64_t T) const {
  double f = 2.0 * cfg_.d_model * cfg_.vocab_size;  // head
  for (auto& L : trunk_.layers()) f += L.block->flops_per_token(T);
  return f;
}

}  // namespace strata
