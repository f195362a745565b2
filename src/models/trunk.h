#pragma once
// The trunk every model shares: layers (each RMSNorm -> block -> residual add) and the final
// RMSNorm, with its forward (training, prefill), backward and step. What goes in (token embedding,
// a projection of observations) and what comes out (LM head, action head) is the model's business
// (models/model.h, models/continuous_model.h); the trunk only sees the residual stream [B, T, D].
// It declares its parameters in the owner's ParamStore ("<prefix>layers.<i>.*", "<prefix>norm_f.weight")
// and takes that store on every call, so an owner may be moved without dangling pointers.
#include <memory>
#include <string>
#include <vector>

#include "core/arena.h"
#include "core/params.h"
#include "layers/block.h"

namespace strata {

struct ModelCache {
  std::vector<std::unique_ptr<BlockCache>> blocks;  // one per layer (null for stateless blocks)
  int64_t batch = 0, max_T = 0, pos = 0;
  int64_t bytes() const;
};

// The serving engine's pools of every layer (null for stateless blocks), sized by `sizes`.
struct ModelRowCache {
  std::vector<std::unique_ptr<BlockRowCache>> blocks;  // one per layer
  PoolSizes sizes;
  bool uses_pages = false;        // some layer keeps KV pages (attention)
  bool uses_state_slots = false;  // some layer keeps state slots (Mamba)
  int64_t page_bytes() const;     // one page over all layers
  int64_t slot_bytes() const;     // one state slot over all layers
};

class Trunk {
 public:
  struct Layer {
    char kind;
    ParamRef norm;
    std::unique_ptr<Block> block;
  };

  // cfg must be resolved. Declares the layers of `pattern` (already expanded), then the final norm.
  void declare(const ModelConfig& cfg, const std::string& pattern, ParamStore& ps, const std::string& prefix = "");

  const std::vector<Layer>& layers() const { return layers_; }
  ParamRef final_norm() const { return final_norm_; }
  int64_t width() const { return D_; }

  // x[B, T, D]: the residual stream, updated in place through every layer (no final norm). With
  // `save` (ctx.training), each layer's input, normed input and rstd are kept in ctx.arena.
  void run_layers(Ctx& ctx, const ParamStore& ps, float* x, int64_t B, int64_t T, ModelCache* cache, bool save);
  // hn[N, D] = final RMSNorm of x[N, D]; with `save`, x (the trunk output), hn and rstd are kept.
  void final_forward(Ctx& ctx, const ParamStore& ps, float* hn, const float* x, int64_t N, bool save);
  // The whole trunk for training: run_layers + final_forward, saving everything; returns hn [B,T,D]
  // (in ctx.arena). x is overwritten.
  float* forward_train(Ctx& ctx, const ParamStore& ps, float* x, int64_t B, int64_t T);
  // dhn[N, D] (gradient of the final norm's output) -> dx[N, D] (assigned) of the trunk input;
  // parameter grads accumulated. The blocks see ctx.loss_scale * loss_scale. Needs forward_train.
  void backward(Ctx& ctx, ParamStore& ps, float* dx, const float* dhn, float loss_scale = 1.0f);
  // One position per sequence: x[B, D] updated through every layer, hn[B, D] the final norm's output.
  void step(Ctx& ctx, const ParamStore& ps, float* x, float* hn, ModelCache& cache);

  // The serving engine's rows: x[rs.n, D] updated through every layer (no final norm), each block
  // through its step_rows on its pools.
  void step_rows(Ctx& ctx, const ParamStore& ps, float* x, const RowStep& rs, ModelRowCache& pools);

  ModelCache allocate_cache(int64_t B, int64_t max_T) const;
  ModelRowCache allocate_row_cache(const PoolSizes& sizes) const;
  double flops_per_token(int64_t T) const;  // the blocks only

 private:
  int64_t D_ = 0;
  float eps_ = 1e-5f;
  ParamRef final_norm_;
  std::vector<Layer> layers_;
  struct Saved {
    bool valid = false;
    int64_t B = 0, T = 0;
    std::vector<float*> resid;  // input of each layer [B*T*D], plus the trunk output at the end
    std::vector<float*> normed, rstd;
    float *final_normed = nullptr, *final_rstd = nullptr;
  } saved_;
};

}  // namespace strata
