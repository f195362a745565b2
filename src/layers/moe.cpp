// Mixture-of-experts block (pattern char 'E'). Forward: router logits -> softmax top-k -> tokens
// grouped per expert (stable counting sort) -> one SwiGLU GEMM chain per expert over its contiguous
// rows -> gate-weighted combine (+ the shared expert on every token). Stateless: step() is the
// forward of one token per sequence.
#include "layers/moe.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/moe.h"
#include "kernels/dispatch.h"
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
    saved_.valid = false;
    run(ctx, y, x, B * T, ctx.training);
    if (ctx.training) {
      saved_.B = B;
      saved_.T = T;
      saved_.valid = true;
    }
  }

  // dy[B, T, D] -> dx[B, T, D] (assigned); router, expert and shared-expert grads accumulated, the
  // aux-loss gradient included.
  void backward(Ctx& ctx, float* dx, const float* dy, int64_t B, int64_t T) override {
    STRATA_CHECK(saved_.valid, "moe backward without a preceding training forward");
    STRATA_CHECK(B == saved_.B && T == saved_.T, "moe backward for [{}, {}] after a forward of [{}, {}]", B, T,
                 saved_.B, saved_.T);
    saved_.valid = false;
    const Device dev = ctx.device;
    Arena& A = *ctx.arena;
    const Saved& s = saved_;
    const int64_t N = B * T, rows = N * K_;

    float* dyp = A.alloc(rows * D_);
    float* dgate = A.alloc(N * K_);
    STRATA_OP(dev, moe_combine_backward, dyp, dgate, dy, s.yp, s.gate, s.row_of, N, K_, D_);

    float* dxp = A.alloc(rows * D_);
    float* scratch = A.alloc(3 * s.max_rows * H_);
    for (int64_t e = 0; e < E_; ++e) {
      const int64_t r0 = s.offsets[e], n = s.offsets[e + 1] - r0;
      if (n == 0) continue;  // an idle expert gets no gradient (and K = 0 GEMMs are avoided)
      const ExpertRefs& ex = experts_[e];
      swiglu_mlp_backward(dev, dxp + r0 * D_, store_.grad(ex.gate), store_.grad(ex.up), store_.grad(ex.down),
                          dyp + r0 * D_, s.xp + r0 * D_, s.hg + r0 * H_, s.hu + r0 * H_, store_.data(ex.gate),
                          store_.data(ex.up), store_.data(ex.down), n, D_, H_, scratch, false);
    }

    float* dlogits = A.alloc(N * E_);
    STRATA_OP(dev, moe_route_backward, dlogits, dgate, s.probs, s.idx, s.gate, N, E_, K_, renorm_);
    STRATA_OP(dev, moe_aux_loss_backward, dlogits, s.probs, s.idx, coef_ * ctx.loss_scale, N, E_, K_);
    STRATA_OP(dev, linear_backward, dx, store_.grad(router_), nullptr, dlogits, s.x, store_.data(router_), N, D_, E_,
              false);
    if (Hs_ > 0) {
      float* sscratch = A.alloc(3 * N * Hs_);
      swiglu_mlp_backward(dev, dx, store_.grad(shared_.gate), store_.grad(shared_.up), store_.grad(shared_.down), dy,
                          s.x, s.shg, s.shu, store_.data(shared_.gate), store_.data(shared_.up),
                          store_.data(shared_.down), N, D_, Hs_, sscratch, true);
    }
    STRATA_OP(dev, moe_scatter_add_rows, dx, dxp, s.row_token, rows, D_);
  }

  std::unique_ptr<BlockCache> allocate_cache(int64_t, int64_t) const override { return nullptr; }

  // x[B, D] -> y[B, D]: the forward of one token per sequence; leaves saved training state alone.
  void step(Ctx& ctx, float* y, const float* x, int64_t B, BlockCache*) override { run(ctx, y, x, B, false); }

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
    const float* xs = x;
    if (save) {
      float* keep = A.alloc(N * D_);
      std::memcpy(keep, x, sizeof(float) * N * D_);
      xs = keep;
    }
    float* logits = A.alloc(N * E_);
    float* probs = A.alloc(N * E_);
    float* gate = A.alloc(N * K_);
    int32_t* idx = A.alloc_int(N * K_);
    int32_t* offsets = A.alloc_int(E_ + 1);
    int32_t* row_token = A.alloc_int(rows);
    int32_t* row_of = A.alloc_int(rows);
    STRATA_OP(dev, linear_forward, logits, xs, store_.data(router_), nullptr, N, D_, E_);
    STRATA_OP(dev, moe_route_forward, idx, gate, probs, logits, N, E_, K_, renorm_);
    STRATA_OP(dev, moe_permute_indices, offsets, row_token, row_of, idx, N, E_, K_);

    float* xp = A.alloc(rows * D_);
    float* yp = A.alloc(rows * D_);
    float* hg = A.alloc(rows * H_);
    float* hu = A.alloc(rows * H_);
    STRATA_OP(dev, moe_gather_rows, xp, xs, row_token, rows, D_);
    // The expert groups are read on the host: they size each expert's GEMMs.
    int64_t max_rows = 0;
    for (int64_t e = 0; e < E_; ++e) max_rows = std::max<int64_t>(max_rows, offsets[e + 1] - offsets[e]);
    float* act = save ? A.alloc(max_rows * H_) : nullptr;  // without save, act overwrites hg in place
    for (int64_t e = 0; e < E_; ++e) {
      const int64_t r0 = offsets[e], n = offsets[e + 1] - r0;
      if (n == 0) continue;
      const ExpertRefs& ex = experts_[e];
      swiglu_mlp_forward(dev, yp + r0 * D_, hg + r0 * H_, hu + r0 * H_, save ? act : hg + r0 * H_, xp + r0 * D_,
                         store_.data(ex.gate), store_.data(ex.up), store_.data(ex.down), n, D_, H_);
    }
    STRATA_OP(dev, moe_combine_forward, y, yp, gate, row_of, N, K_, D_);

    float* shg = nullptr;
    float* shu = nullptr;
    if (Hs_ > 0) {
      float* ys = A.alloc(N * D_);
      shg = A.alloc(N * Hs_);
      shu = A.alloc(N * Hs_);
      swiglu_mlp_forward(dev, ys, shg, shu, save ? A.alloc(N * Hs_) : shg, xs, store_.data(shared_.gate),
                         store_.data(shared_.up), store_.data(shared_.down), N, D_, Hs_);
      for (int64_t i = 0; i < N * D_; ++i) y[i] += ys[i];
    }

    if (!save) return;
    // Host-side reduction over probs[N, E], like the expert offsets above.
    aux_ = double(coef_) * double(cpu::moe_aux_loss_forward(probs, idx, N, E_, K_));
    saved_.x = xs;
    saved_.probs = probs;
    saved_.gate = gate;
    saved_.idx = idx;
    saved_.offsets = offsets;
    saved_.row_token = row_token;
    saved_.row_of = row_of;
    saved_.xp = xp;
    saved_.yp = yp;
    saved_.hg = hg;
    saved_.hu = hu;
    saved_.shg = shg;
    saved_.shu = shu;
    saved_.max_rows = max_rows;
  }

  struct Saved {
    const float *x = nullptr, *probs = nullptr, *gate = nullptr;
    const int32_t *idx = nullptr, *offsets = nullptr, *row_token = nullptr, *row_of = nullptr;
    const float *xp = nullptr, *yp = nullptr, *hg = nullptr, *hu = nullptr;  // permuted rows [N k, .]
    const float *shg = nullptr, *shu = nullptr;                              // shared expert [N, Hs]
    int64_t max_rows = 0, B = 0, T = 0;
    bool valid = false;
  };

  ParamStore& store_;
  int64_t D_, E_, K_, H_, Hs_;
  float coef_;
  bool renorm_;
  ParamRef router_;
  std::vector<ExpertRefs> experts_;
  ExpertRefs shared_;
  Saved saved_;
  double aux_ = 0.0;
};

}  // namespace

std::unique_ptr<Block> make_moe(const ModelConfig& cfg, ParamStore& store, const std::string& prefix) {
  return std::make_unique<Moe>(cfg, store, prefix);
}

}  // namespace strata
