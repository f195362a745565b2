#pragma once
// Model = embedding -> trunk (layers, each RMSNorm -> block -> residual add; final RMSNorm) -> head.
// The layer list is the config's pattern string repeated `repeat` times. The trunk (models/trunk.h)
// is the piece shared with the models of continuous inputs (models/continuous_model.h).
#include <memory>
#include <string>
#include <vector>

#include "core/arena.h"
#include "core/params.h"
#include "layers/block.h"
#include "layers/quant_linear.h"
#include "models/config.h"
#include "models/trunk.h"

namespace strata {

class Model {
 public:
  explicit Model(const ModelConfig& cfg, uint64_t seed = 1);
  // For a model whose every parameter is loaded next (checkpoint, Hugging Face import): parameters
  // start at zero instead of a random initialisation, which for a 100M-parameter model costs as long
  // as the load itself.
  struct Uninitialised {};
  Model(const ModelConfig& cfg, Uninitialised);

  using Layer = Trunk::Layer;

  const ModelConfig& config() const { return cfg_; }
  ParamStore& params() { return params_; }
  const ParamStore& params() const { return params_; }
  const std::vector<Layer>& layers() const { return trunk_.layers(); }
  std::string layer_pattern() const;  // the expanded pattern, one char per layer

  // ids, targets and logits are host arrays on every device (ctx.device says where the work runs;
  // on cuda they are staged through ctx.arena, which must then be a cuda arena, and the parameters
  // must have been moved there with params().to_device).
  // Training: ids, targets[B, T] -> mean cross-entropy (targets < 0 ignored). Keeps activations in
  // ctx.arena for backward(). aux_loss() then holds the sum of the blocks' auxiliary losses.
  float forward_loss(Ctx& ctx, const int32_t* ids, const int32_t* targets, int64_t B, int64_t T);
  // Accumulates parameter grads of (loss * loss_scale + aux losses). Needs forward_loss first.
  void backward(Ctx& ctx, float loss_scale = 1.0f);
  double aux_loss() const { return aux_loss_; }

  // Inference: ids[B, T] -> logits[B, T, V]. With a cache (empty), fills it (prefill).
  void forward_logits(Ctx& ctx, float* logits, const int32_t* ids, int64_t B, int64_t T, ModelCache* cache);
  // Prefill for generation: ids[B, T] -> logits[B, V] of each sequence's last position only, filling
  // the (empty) cache as forward_logits does. Decoding needs no other row, and the head (V x D per
  // position) is the largest matrix of a small model: skipping it for T - 1 positions halves the
  // prefill of a 50M-parameter Llama with a 32k vocabulary.
  void prefill(Ctx& ctx, float* logits, const int32_t* ids, int64_t B, int64_t T, ModelCache& cache);
  // One token per sequence: ids[B] -> logits[B, V]; advances the cache.
  void step(Ctx& ctx, float* logits, const int32_t* ids, ModelCache& cache);
  // The same with ids_dev[B] and logits_dev[B, V] in ctx.device memory: only device work is queued,
  // so a CUDA graph can record it (infer/decoder.h).
  void step_on_device(Ctx& ctx, float* logits_dev, const int32_t* ids_dev, ModelCache& cache);
  ModelCache allocate_cache(int64_t B, int64_t max_T) const;

  // The serving engine's flat batch (layers/rows.h): every row one token of some sequence, KV in the
  // pages and state in the slots of `pools` (allocate_row_cache). rb is checked first (InputError
  // on anything out of place). logits (host) [rb.logits_rows.size(), V]: the next-token logits of
  // those rows, in that order. With ctx.row_tile > 0 every row's logits are bitwise independent of
  // the other rows of the batch and of how its sequence was split into chunks.
  void step_rows(Ctx& ctx, float* logits, const RowBatch& rb, ModelRowCache& pools);
  ModelRowCache allocate_row_cache(const PoolSizes& sizes) const { return trunk_.allocate_row_cache(sizes); }

  // Mean cross-entropy without saving activations (evaluation). With argmax (host [B, T]), also the
  // predicted id at every position (the first of equal logits), for accuracy metrics.
  float eval_loss(Ctx& ctx, const int32_t* ids, const int32_t* targets, int64_t B, int64_t T, int32_t* argmax = nullptr);

  // Weight-only int8 / int4 inference (layers/quant_linear.h): from now on the forward passes read
  // the weights q holds through the quantised kernels, and training (forward_loss, backward) is
  // refused. The flat buffer should hold their dequantised values (models/quantize.h does both).
  void set_quantized(std::unique_ptr<QuantizedLinears> q) { quant_ = std::move(q); }
  const QuantizedLinears* quantized() const { return quant_.get(); }
  QuantizedLinears* quantized() { return quant_.get(); }

  int64_t vocab() const { return cfg_.vocab_size; }
  double flops_per_token(int64_t T) const;  // forward only

 private:
  void add_parameters();  // the layers and their parameter entries (before allocation)
  void logits_on_device(Ctx& ctx, float* logits_dev, const int32_t* ids_dev, int64_t B, int64_t T, ModelCache* cache);
  void head_forward(const Ctx& ctx, float* logits, const float* hn, int64_t N) const;
  void use_quantized(Ctx& ctx);  // sets ctx.quant (null when fp32) and keeps quant_ with the parameters

  ModelConfig cfg_;
  ParamStore params_;
  ParamRef embed_, head_;  // head_ invalid when tied to the embedding
  Trunk trunk_;
  std::unique_ptr<QuantizedLinears> quant_;  // null: fp32 weights

  // Saved by forward_loss for backward (the trunk keeps its own).
  struct Saved {
    bool valid = false;
    int64_t B = 0, T = 0;
    const int32_t* ids = nullptr;
    float *final_normed = nullptr, *dlogits = nullptr;
  } saved_;
  double aux_loss_ = 0.0;
};

}  // namespace strata
