// Mixture-of-experts block (pattern char 'E'). Forward: router logits -> softmax top-k -> tokens
// grouped per expert (stable counting sort) -> every expert's SwiGLU over its contiguous rows as
// grouped products (moe_grouped_linear_*: one launch per product on cuda, and the expert offsets
// never leave the device) -> gate-weighted combine (+ the shared expert on every token). Stateless:
// step() is the forward of one token per sequence.
#include "layers/moe.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/activation.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/moe.h"
#include "kernels/dispatch.h"
#include "layers/block_state.h"
#include "layers/linear.h"
#include "layers/mlp.h"

namespace strata {
namespace {

struct ExpertRefs {
  ParamRef gate, up, down;
};

class Moe final : public Block {
 public:
  Moe(const ModelConfig& cfg, ParamStore& store, const std::string& prefix)
      : store_(store),
        D_(cfg.d_model),
        E_(cfg.moe.experts),
        K_(cfg.moe.top_k),
        H_(cfg.moe.hidden),
        Hs_(int64_t(cfg.moe.shared_experts) * cfg.moe.hidden),
        coef_(cfg.moe.aux_loss),
        renorm_(cfg.moe.renorm) {
    STRATA_CHECK(E_ >= 1, "{}: moe.experts must be >= 1 (got {})", prefix, E_);
    STRATA_CHECK(K_ >= 1 && K_ <= E_, "{}: moe.top_k must be in [1, experts = {}] (got {})", prefix, E_, K_);
    STRATA_CHECK(H_ > 0, "{}: moe.hidden must be positive (got {}; call resolve())", prefix, H_);
    STRATA_CHECK(cfg.moe.shared_experts >= 0, "{}: moe.shared_experts must be >= 0 (got {})", prefix,
                 cfg.moe.shared_experts);
    const int64_t n_layers = int64_t(cfg.pattern.size()) * cfg.repeat;
    // Same scaled init of the residual-writing projection as the dense MLP (layers/mlp.cpp).
    const float out_std = cfg.init_std / std::sqrt(2.0f * float(n_layers > 0 ? n_layers : 1));
    router_ = store.add(prefix + ".gate.weight", {E_, D_}, Init::normal(cfg.init_std), true);
    auto add_expert = [&](const std::string& p, int64_t H) {
      ExpertRefs r;
      r.gate = store.add(p + ".gate_proj.weight", {H, D_}, Init::normal(cfg.init_std), true);
      r.up = store.add(p + ".up_proj.weight", {H, D_}, Init::normal(cfg.init_std), true);
      r.down = store.add(p + ".down_proj.weight", {D_, H}, Init::normal(out_std), true);
      return r;
    };
    for (int64_t e = 0; e < E_; ++e) experts_.push_back(add_expert(prefix + ".experts." + std::to_string(e), H_));
    if (Hs_ > 0) shared_ = add_expert(prefix + ".shared_expert", Hs_);
  }

  std::string kind() const override { return "moe"; }

  // x[B, T, D] -> y[B, T, D]. When training, keeps x, the routing, the permuted rows, the expert
  // pre-activations and outputs for backward, and computes the aux loss.
  void forward(Ctx& ctx, float* y, const float* x, int64_t B, int64_t T, BlockCache*) override {
    saved_.clear();
    run(ctx, y, x, B * T, ctx.training);
    if (ctx.training) saved_.keep(B, T);
  }

  // dy[B, T, D] -> dx[B, T, D] (assigned); router, expert and shared-expert grads accumulated, the
  // aux-loss gradient included.
  void backward(Ctx& ctx, float* dx, const float* dy, int64_t B, int64_t T) override {
    const Saved& s = saved_.take("moe", B, T);
    const Device dev = ctx.device;
    Arena& A = *ctx.arena;
    const int64_t N = B * T, rows = N * K_;

    float* dyp = A.alloc(rows * D_);
    float* dgate = A.alloc(N * K_);
    STRATA_OP(dev, moe_combine_backward, dyp, dgate, dy, s.yp, s.gate, s.row_of, N, K_, D_);

    // The experts' SwiGLU backward as grouped products (an idle expert gets no gradient). The saved
    // act is dead once dW_down has been accumulated and takes dhg.
    float* dxp = A.alloc(rows * D_);
    float* dact = A.alloc(rows * H_);
    float* dhu = A.alloc(rows * H_);
    float* dhg = s.act;
    const int64_t ws = expert_stride();
    const ExpertRefs& e0 = experts_[0];
    STRATA_OP(dev, moe_grouped_linear_backward, dact, store_.grad(e0.down), dyp, s.act, store_.data(e0.down), ws,
              s.offsets, rows, E_, H_, D_, false);
    STRATA_OP(dev, swiglu_backward, dhg, dhu, dact, s.hg, s.hu, rows * H_);
    STRATA_OP(dev, moe_grouped_linear_backward, dxp, store_.grad(e0.gate), dhg, s.xp, store_.data(e0.gate), ws,
              s.offsets, rows, E_, D_, H_, false);
    STRATA_OP(dev, moe_grouped_linear_backward, dxp, store_.grad(e0.up), dhu, s.xp, store_.data(e0.up), ws, s.offsets,
              rows, E_, D_, H_, true);

    float* dlogits = A.alloc(N * E_);
    STRATA_OP(dev, moe_route_backward, dlogits, dgate, s.probs, s.idx, s.gate, N, E_, K_, renorm_);
    STRATA_OP(dev, moe_aux_loss_backward, dlogits, s.probs, s.idx, coef_ * ctx.loss_scale, N, E_, K_);
    // fp32 router in every precision (see run()).
    STRATA_OP(dev, linear_backward, dx, store_.grad(router_), nullptr, dlogits, s.x, store_.data(router_), N, D_, E_,
              false);
    if (Hs_ > 0) {
      float* sscratch = A.alloc(3 * N * Hs_);
      swiglu_mlp_backward(ctx, dx, store_.grad(shared_.gate), store_.grad(shared_.up), store_.grad(shared_.down), dy,
                          s.x, s.shg, s.shu, store_.data(shared_.gate), store_.data(shared_.up),
                          store_.data(shared_.down), N, D_, Hs_, sscratch, true);
    }
    STRATA_OP(dev, moe_scatter_add_rows, dx, dxp, s.row_token, rows, D_);
  }

  std::unique_ptr<BlockCache> allocate_cache(int64_t, int64_t) const override { return nullptr; }

  // x[B, D] -> y[B, D]: the forward of one token per sequence; leaves saved training state alone.
  void step(Ctx& ctx, float* y, const float* x, int64_t B, BlockCache*) override { run(ctx, y, x, B, false); }

  std::unique_ptr<BlockRowCache> allocate_row_cache(const PoolSizes&) const override { return nullptr; }

  // x[n, D] -> y[n, D]: the forward of n independent tokens (step's, over the rows; with
  // ctx.row_tile every product in fixed row tiles, see run()).
  void step_rows(Ctx& ctx, float* y, const float* x, const RowStep& rs, BlockRowCache*) override {
    run(ctx, y, x, rs.n, false);
  }

  double aux_loss() const override { return aux_; }

  double flops_per_token(int64_t) const override {
    double f = 2.0 * double(D_) * double(E_) + double(K_) * (swiglu_mlp_flops(D_, H_) + 2.0 * double(D_));
    if (Hs_ > 0) f += swiglu_mlp_flops(D_, Hs_) + double(D_);
    return f;
  }

 private:
  // The forward over N tokens; `save` keeps what backward needs in saved_ and sets aux_.
  void run(Ctx& ctx, float* y, const float* x, int64_t N, bool save) {
    STRATA_CHECK(ctx.arena, "moe forward needs ctx.arena");
    const Device dev = ctx.device;
    Arena& A = *ctx.arena;
    const int64_t rows = N * K_;
    const float* xs = save ? kept_input(ctx, x, N * D_) : x;
    float* logits = A.alloc(N * E_);
    float* probs = A.alloc(N * E_);
    float* gate = A.alloc(N * K_);
    int32_t* idx = A.alloc_int(N * K_);
    int32_t* offsets = A.alloc_int(E_ + 1);
    int32_t* row_token = A.alloc_int(rows);
    int32_t* row_of = A.alloc_int(rows);
    // The router stays fp32 in bf16 mode (the fp32 kernel, not layers/linear.h): top-k picks among
    // nearly tied logits, and bf16 rounding would flip routing decisions. The grouped expert
    // products below are fp32 too (they have no bf16 kernel yet); the shared expert follows
    // ctx.precision through swiglu_mlp_forward.
    if (ctx.row_tile > 0)  // the same fp32 product in fixed row tiles (batch invariance, Ctx::row_tile)
      rows_gemm(ctx, true, N, E_, D_, xs, D_, store_.data(router_), D_, logits, E_);
    else
      STRATA_OP(dev, linear_forward, logits, xs, store_.data(router_), nullptr, N, D_, E_);
    STRATA_OP(dev, moe_route_forward, idx, gate, probs, logits, N, E_, K_, renorm_);
    STRATA_OP(dev, moe_permute_indices, offsets, row_token, row_of, idx, N, E_, K_);

    float* xp = A.alloc(rows * D_);
    float* yp = A.alloc(rows * D_);
    float* hg = A.alloc(rows * H_);
    float* hu = A.alloc(rows * H_);
    STRATA_OP(dev, moe_gather_rows, xp, xs, row_token, rows, D_);
    // Every expert's SwiGLU over its rows as three grouped products: the offsets stay where the
    // routing wrote them (no host round trip on cuda).
    const int64_t ws = expert_stride();
    const ExpertRefs& e0 = experts_[0];
    const std::vector<int32_t> tiled = ctx.row_tile > 0 ? host_offsets(dev, offsets) : std::vector<int32_t>{};
    grouped(ctx, hg, xp, store_.data(e0.gate), ws, offsets, tiled, rows, D_, H_);
    grouped(ctx, hu, xp, store_.data(e0.up), ws, offsets, tiled, rows, D_, H_);
    float* act = save ? A.alloc(rows * H_) : hg;  // kept for backward; without save it overwrites hg
    STRATA_OP(dev, swiglu_forward, act, hg, hu, rows * H_);
    grouped(ctx, yp, act, store_.data(e0.down), ws, offsets, tiled, rows, H_, D_);
    STRATA_OP(dev, moe_combine_forward, y, yp, gate, row_of, N, K_, D_);

    float* shg = nullptr;
    float* shu = nullptr;
    if (Hs_ > 0) {
      float* ys = A.alloc(N * D_);
      shg = A.alloc(N * Hs_);
      shu = A.alloc(N * Hs_);
      swiglu_mlp_forward(ctx, ys, shg, shu, save ? A.alloc(N * Hs_) : shg, xs, store_.data(shared_.gate),
                         store_.data(shared_.up), store_.data(shared_.down), N, D_, Hs_);
      STRATA_OP(dev, add_inplace, y, ys, N * D_);
    }

    if (!save) return;
    aux_ = double(coef_) * double(STRATA_OP_VALUE(dev, moe_aux_loss_forward, probs, idx, N, E_, K_));
    Saved& sv = saved_.acts();
    sv.x = xs;
    sv.probs = probs;
    sv.gate = gate;
    sv.idx = idx;
    sv.offsets = offsets;
    sv.row_token = row_token;
    sv.row_of = row_of;
    sv.xp = xp;
    sv.yp = yp;
    sv.hg = hg;
    sv.hu = hu;
    sv.act = act;
    sv.shg = shg;
    sv.shu = shu;
  }

  // The expert offsets [E + 1] on the host (one small copy on cuda).
  std::vector<int32_t> host_offsets(Device dev, const int32_t* offsets) const {
    std::vector<int32_t> h(size_t(E_ + 1));
    copy_bytes(h.data(), Device::cpu, offsets, dev, sizeof(int32_t) * h.size());
    return h;
  }

  // out = every expert's rows of inp times its matrix (W_e at w + e * ws, [OC, IC]): the grouped op;
  // with ctx.row_tile (host offsets in `tiled`) each expert's rows as the same fp32 product in fixed
  // row tiles instead, since a group's size depends on the other tokens of the batch.
  void grouped(const Ctx& ctx, float* out, const float* inp, const float* w, int64_t ws, const int32_t* offsets,
               const std::vector<int32_t>& tiled, int64_t rows, int64_t IC, int64_t OC) const {
    if (ctx.row_tile <= 0) {
      STRATA_OP(ctx.device, moe_grouped_linear_forward, out, inp, w, ws, offsets, rows, E_, IC, OC);
      return;
    }
    for (int64_t e = 0; e < E_; ++e) {
      const int64_t r0 = tiled[size_t(e)], n = tiled[size_t(e + 1)] - r0;
      if (n > 0) rows_gemm(ctx, true, n, OC, IC, inp + r0 * IC, IC, w + e * ws, IC, out + r0 * OC, OC);
    }
  }

  // Floats between consecutive experts' matrices, as the grouped ops take them: experts are added
  // one after another (gate, up, down each), so every matrix kind sits at one stride. Checked once.
  int64_t expert_stride() {
    if (stride_ >= 0) return stride_;
    const int64_t s = E_ > 1 ? store_.data(experts_[1].gate) - store_.data(experts_[0].gate) : 0;
    for (int64_t e = 0; e < E_; ++e) {
      const ExpertRefs& x = experts_[e];
      const ExpertRefs& x0 = experts_[0];
      STRATA_CHECK(store_.data(x.gate) == store_.data(x0.gate) + e * s &&
                       store_.data(x.up) == store_.data(x0.up) + e * s &&
                       store_.data(x.down) == store_.data(x0.down) + e * s,
                   "moe: expert {}'s weights are not at a uniform stride in the parameter buffer", e);
    }
    return stride_ = s;
  }

  struct Saved {
    const float *x = nullptr, *probs = nullptr, *gate = nullptr;
    const int32_t *idx = nullptr, *offsets = nullptr, *row_token = nullptr, *row_of = nullptr;
    const float *xp = nullptr, *yp = nullptr, *hg = nullptr, *hu = nullptr;  // permuted rows [N k, .]
    float* act = nullptr;  // swiglu(hg, hu) [N k, H]; backward reuses it as scratch
    const float *shg = nullptr, *shu = nullptr;  // shared expert [N, Hs]
  };

  ParamStore& store_;
  int64_t D_, E_, K_, H_, Hs_;
  float coef_;
  bool renorm_;
  ParamRef router_;
  std::vector<ExpertRefs> experts_;
  ExpertRefs shared_;
  SavedActs<Saved> saved_;
  int64_t stride_ = -1;  // expert_stride(), once known
  double aux_ = 0.0;
};

}  // namespace

std::unique_ptr<Block> make_moe(const ModelConfig& cfg, ParamStore& store, const std::string& prefix) {
  return std::make_unique<Moe>(cfg, store, prefix);
}

}  // namespace strata
