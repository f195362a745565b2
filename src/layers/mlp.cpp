// SwiGLU MLP block (pattern char '-'): stateless, so step() is the forward of one token.
#include "layers/mlp.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "kernels/cpu/activation.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/dispatch.h"
#include "layers/block_state.h"
#include "layers/linear.h"

namespace strata {

// hg = x Wg^T, hu = x Wu^T, act = silu(hg) * hu, y = act Wd^T.
void swiglu_mlp_forward(const Ctx& ctx, float* y, float* hg, float* hu, float* act, const float* x, const float* wg,
                        const float* wu, const float* wd, int64_t N, int64_t D, int64_t H) {
  if (N == 0) return;
  linear_forward(ctx, hg, x, wg, nullptr, N, D, H);
  linear_forward(ctx, hu, x, wu, nullptr, N, D, H);
  STRATA_OP(ctx.device, swiglu_forward, act, hg, hu, N * H);
  linear_forward(ctx, y, act, wd, nullptr, N, H, D);
}

// act is recomputed from hg, hu (one elementwise pass) rather than kept: it saves N*H floats of
// activations per MLP for a cost far below the GEMMs.
void swiglu_mlp_backward(const Ctx& ctx, float* dx, float* dwg, float* dwu, float* dwd, const float* dy, const float* x,
                         const float* hg, const float* hu, const float* wg, const float* wu, const float* wd,
                         int64_t N, int64_t D, int64_t H, float* scratch, bool accumulate_dx) {
  if (N == 0) return;
  float* act = scratch;
  float* dact = scratch + N * H;
  float* dhu = scratch + 2 * N * H;
  float* dhg = act;  // act is dead once dwd has been accumulated
  STRATA_OP(ctx.device, swiglu_forward, act, hg, hu, N * H);
  linear_backward(ctx, dact, dwd, nullptr, dy, act, wd, N, H, D, false);
  STRATA_OP(ctx.device, swiglu_backward, dhg, dhu, dact, hg, hu, N * H);
  linear_backward(ctx, dx, dwg, nullptr, dhg, x, wg, N, D, H, accumulate_dx);
  linear_backward(ctx, dx, dwu, nullptr, dhu, x, wu, N, D, H, true);
}

namespace {

class Mlp final : public Block {
 public:
  Mlp(const ModelConfig& cfg, ParamStore& store, const std::string& prefix)
      : store_(store), D_(cfg.d_model), H_(cfg.mlp.hidden) {
    STRATA_CHECK(H_ > 0, "{}: mlp.hidden must be positive (got {}; call resolve())", prefix, H_);
    const int64_t n_layers = int64_t(cfg.pattern.size()) * cfg.repeat;
    // GPT-2 / Megatron scaling of the projection that writes into the residual stream, so the
    // stream's variance does not grow with depth.
    const float out_std = cfg.init_std / std::sqrt(2.0f * float(n_layers > 0 ? n_layers : 1));
    wg_ = store.add(prefix + ".gate_proj.weight", {H_, D_}, Init::normal(cfg.init_std), true);
    wu_ = store.add(prefix + ".up_proj.weight", {H_, D_}, Init::normal(cfg.init_std), true);
    wd_ = store.add(prefix + ".down_proj.weight", {D_, H_}, Init::normal(out_std), true);
  }

  std::string kind() const override { return "mlp"; }

  // x[B, T, D] -> y[B, T, D]. Saves a copy of x and the pre-activations hg, hu[N, H] when training.
  void forward(Ctx& ctx, float* y, const float* x, int64_t B, int64_t T, BlockCache*) override {
    STRATA_CHECK(ctx.arena, "mlp forward needs ctx.arena");
    const int64_t N = B * T;
    Arena& A = *ctx.arena;
    saved_.clear();
    float* hg = A.alloc(N * H_);
    float* hu = A.alloc(N * H_);
    if (!ctx.training) {
      swiglu_mlp_forward(ctx, y, hg, hu, hg, x, w(wg_), w(wu_), w(wd_), N, D_, H_);
      return;
    }
    const float* xs = kept_input(ctx, x, N * D_);
    float* act = A.alloc(N * H_);
    swiglu_mlp_forward(ctx, y, hg, hu, act, xs, w(wg_), w(wu_), w(wd_), N, D_, H_);
    saved_.keep({xs, hg, hu}, B, T);
  }

  // dy[B, T, D] -> dx[B, T, D] (assigned); weight grads accumulated.
  void backward(Ctx& ctx, float* dx, const float* dy, int64_t B, int64_t T) override {
    const Saved& s = saved_.take("mlp", B, T);
    const int64_t N = B * T;
    float* scratch = ctx.arena->alloc(3 * N * H_);
    swiglu_mlp_backward(ctx, dx, store_.grad(wg_), store_.grad(wu_), store_.grad(wd_), dy, s.x, s.hg, s.hu, w(wg_),
                        w(wu_), w(wd_), N, D_, H_, scratch, false);
  }

  std::unique_ptr<BlockCache> allocate_cache(int64_t, int64_t) const override { return nullptr; }

  // x[B, D] -> y[B, D]: the forward of one token; leaves any saved training state alone.
  void step(Ctx& ctx, float* y, const float* x, int64_t B, BlockCache*) override {
    STRATA_CHECK(ctx.arena, "mlp step needs ctx.arena");
    float* hg = ctx.arena->alloc(B * H_);
    float* hu = ctx.arena->alloc(B * H_);
    swiglu_mlp_forward(ctx, y, hg, hu, hg, x, w(wg_), w(wu_), w(wd_), B, D_, H_);
  }

  std::unique_ptr<BlockRowCache> allocate_row_cache(const PoolSizes&) const override { return nullptr; }

  // x[n, D] -> y[n, D]: the forward of n independent tokens (step's, over the rows).
  void step_rows(Ctx& ctx, float* y, const float* x, const RowStep& rs, BlockRowCache*) override {
    step(ctx, y, x, rs.n, nullptr);
  }

  double flops_per_token(int64_t) const override { return swiglu_mlp_flops(D_, H_); }

 private:
  const float* w(ParamRef r) const { return store_.data(r); }

  struct Saved {
    const float* x = nullptr;
    const float* hg = nullptr;
    const float* hu = nullptr;
  };

  ParamStore& store_;
  int64_t D_, H_;
  ParamRef wg_, wu_, wd_;
  SavedActs<Saved> saved_;
};

}  // namespace

std::unique_ptr<Block> make_mlp(const ModelConfig& cfg, ParamStore& store, const std::string& prefix) {
  return std::make_unique<Mlp>(cfg, store, prefix);
}

}  // namespace strata
