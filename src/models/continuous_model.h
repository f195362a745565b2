#pragma once
// A model of continuous vectors: in[B, T, in_dim] -> linear input adapter -> trunk (the same layers
// and blocks as the language model, models/trunk.h) -> linear output head -> out[B, T, out_dim].
// The robot planner (observations -> plan latent and/or action chunk) and controller (observation +
// latent + plan age -> action) are two of these (models/multirate.h). Losses live with the caller
// (models/action_loss.h): backward takes the gradient of the output, and can hand back the
// gradient of the input, which is how a controller's loss reaches the planner that fed it.
// CPU only for now: inputs and outputs are host arrays used in place.
#include <cstdint>
#include <string>

#include "core/params.h"
#include "models/config.h"
#include "models/trunk.h"

namespace strata {

class ContinuousModel {
 public:
  // cfg: the block settings and d_model (resolved here on a copy); pattern: expanded layer string.
  // Parameters: "<prefix>in_proj.{weight,bias}", the trunk's, "<prefix>head.{weight,bias}".
  void declare(ModelConfig cfg, const std::string& pattern, int64_t in_dim, int64_t out_dim, ParamStore& ps,
               const std::string& prefix);

  int64_t in_dim() const { return in_; }
  int64_t out_dim() const { return out_; }
  const Trunk& trunk() const { return trunk_; }

  // Training: saves activations in ctx.arena (ctx.training). out[B*T, out_dim] is written.
  void forward_train(Ctx& ctx, const ParamStore& ps, float* out, const float* in, int64_t B, int64_t T);
  // dout[B*T, out_dim] -> parameter grads accumulated; din[B*T, in_dim] assigned when non-null.
  void backward(Ctx& ctx, ParamStore& ps, float* din, const float* dout);
  // Inference over whole sequences; with an empty cache, fills it as T steps would.
  void forward(Ctx& ctx, const ParamStore& ps, float* out, const float* in, int64_t B, int64_t T, ModelCache* cache);
  // One position per sequence: in[B, in_dim] -> out[B, out_dim]; advances the cache.
  void step(Ctx& ctx, const ParamStore& ps, float* out, const float* in, ModelCache& cache);
  ModelCache allocate_cache(int64_t B, int64_t max_T) const { return trunk_.allocate_cache(B, max_T); }

 private:
  int64_t in_ = 0, out_ = 0, D_ = 0;
  ParamRef in_w_, in_b_, head_w_, head_b_;
  Trunk trunk_;
  struct Saved {
    bool valid = false;
    int64_t N = 0;
    const float* in = nullptr;  // a copy in the arena
    float* hn = nullptr;
  } saved_;
};

}  // namespace strata
