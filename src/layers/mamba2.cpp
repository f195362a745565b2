// Mamba-2 mixer block: in_proj -> causal conv + silu over x|B|C -> SSD -> gated RMSNorm -> out_proj.
// in_proj runs as three GEMMs over row blocks of its weight (z, xBC, dt), so each piece lands in its
// own contiguous buffer. The conv needs x|B|C interleaved per token (one conv, one cache layout), the
// SSD wants them apart: the conv output is split by a copy, O(tokens x conv_dim), negligible next to
// the projections.
#include "layers/mamba2.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/conv1d.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/ssd.h"
#include "kernels/dispatch.h"
#include "layers/block_state.h"
#include "layers/linear.h"
#include "layers/row_pools.h"

namespace strata {
namespace {

// dt_bias = softplus^-1(dt), dt log-uniform in [dt_min, dt_max] and at least dt_init_floor (mamba2.py).
Init dt_bias_init(float dt_min, float dt_max, float floor) {
  return {[=](float* p, int64_t n, Rng& r) {
    const double lo = std::log(double(dt_min)), hi = std::log(double(dt_max));
    for (int64_t i = 0; i < n; ++i) {
      double dt = std::exp(lo + (hi - lo) * double(r.uniform()));
      dt = std::max(dt, double(floor));
      p[i] = float(dt + std::log(-std::expm1(-dt)));
    }
  }};
}

// A_log = log(U(1, 16)) (mamba2.py's A_init_range): per-head decay rates spread over a decade.
Init a_log_init() {
  return {[](float* p, int64_t n, Rng& r) {
    for (int64_t i = 0; i < n; ++i) p[i] = float(std::log(1.0 + 15.0 * double(r.uniform())));
  }};
}

// PyTorch's nn.Linear / nn.Conv1d default (kaiming_uniform with a = sqrt(5)): U(+-1/sqrt(fan_in)).
Init torch_default(int64_t fan_in, float scale = 1.0f) {
  const float b = scale / std::sqrt(float(fan_in));
  return Init::uniform(-b, b);
}

// xbc[N, Di + 2GN] -> x[N, Di], Bm[N, GN], Cm[N, GN], and back (pack).
void split_xbc(Device dev, float* x, float* Bm, float* Cm, const float* xbc, int64_t N, int64_t Di, int64_t GN) {
  const int64_t C = Di + 2 * GN;
  STRATA_OP(dev, copy_strided, x, Di, xbc, C, N, Di);
  STRATA_OP(dev, copy_strided, Bm, GN, xbc + Di, C, N, GN);
  STRATA_OP(dev, copy_strided, Cm, GN, xbc + Di + GN, C, N, GN);
}
void pack_xbc(Device dev, float* xbc, const float* x, const float* Bm, const float* Cm, int64_t N, int64_t Di,
              int64_t GN) {
  const int64_t C = Di + 2 * GN;
  STRATA_OP(dev, copy_strided, xbc, C, x, Di, N, Di);
  STRATA_OP(dev, copy_strided, xbc + Di, C, Bm, GN, N, GN);
  STRATA_OP(dev, copy_strided, xbc + Di + GN, C, Cm, GN, N, GN);
}

class Mamba2 final : public Block {
 public:
  Mamba2(const ModelConfig& cfg, ParamStore& store, const std::string& prefix)
      : store_(store),
        D_(cfg.d_model),
        Di_(int64_t(cfg.mamba.expand) * cfg.d_model),
        P_(cfg.mamba.head_dim),
        G_(cfg.mamba.ngroups),
        N_(cfg.mamba.d_state),
        K_(cfg.mamba.d_conv),
        Q_(cfg.mamba.chunk),
        eps_(cfg.norm_eps) {
    STRATA_CHECK(D_ > 0 && Di_ > 0, "{}: d_model ({}) and mamba.expand ({}) must be positive", prefix, D_,
                 cfg.mamba.expand);
    STRATA_CHECK(P_ > 0 && Di_ % P_ == 0, "{}: mamba.head_dim ({}) must divide d_inner = expand * d_model ({})",
                 prefix, P_, Di_);
    H_ = Di_ / P_;
    STRATA_CHECK(G_ > 0 && H_ % G_ == 0, "{}: mamba.ngroups ({}) must divide the number of heads ({})", prefix, G_,
                 H_);
    STRATA_CHECK(N_ > 0, "{}: mamba.d_state must be positive (got {})", prefix, N_);
    STRATA_CHECK(K_ > 0, "{}: mamba.d_conv must be positive (got {})", prefix, K_);
    STRATA_CHECK(Q_ > 0, "{}: mamba.chunk must be positive (got {})", prefix, Q_);
    if (!cfg.mamba.selective)
      throw InputError(fmt::format("{}: mamba.selective: false (the non-selective baseline) is implemented for "
                                   "Mamba-1 only; set mamba.version: 1",
                                   prefix));
    Cd_ = Di_ + 2 * G_ * N_;
    const int64_t n_in = Di_ + Cd_ + H_;
    const int64_t n_layers = std::max<int64_t>(1, int64_t(cfg.pattern.size()) * cfg.repeat);
    const auto& m = cfg.mamba;
    // Init as mamba2.py: PyTorch defaults for the projections and the conv, out_proj additionally
    // divided by sqrt(n_layers) (rescale_prenorm_residual), zero projection biases.
    in_w_ = store.add(prefix + ".in_proj.weight", {n_in, D_}, torch_default(D_), true);
    if (m.bias) in_b_ = store.add(prefix + ".in_proj.bias", {n_in}, Init::zeros(), false);
    conv_w_ = store.add(prefix + ".conv1d.weight", {Cd_, 1, K_}, torch_default(K_), true);
    if (m.conv_bias) conv_b_ = store.add(prefix + ".conv1d.bias", {Cd_}, torch_default(K_), false);
    dt_b_ = store.add(prefix + ".dt_bias", {H_}, dt_bias_init(m.dt_min, m.dt_max, m.dt_init_floor), false);
    a_log_ = store.add(prefix + ".A_log", {H_}, a_log_init(), false);
    d_ = store.add(prefix + ".D", {H_}, Init::constant(1.0f), false);
    norm_w_ = store.add(prefix + ".norm.weight", {Di_}, Init::constant(1.0f), false);
    out_w_ = store.add(prefix + ".out_proj.weight", {D_, Di_},
                       torch_default(Di_, 1.0f / std::sqrt(float(n_layers))), true);
    if (m.bias) out_b_ = store.add(prefix + ".out_proj.bias", {D_}, Init::zeros(), false);
  }

  std::string kind() const override { return "mamba2"; }

  // x[B, T, D] -> y[B, T, D]. Training saves x, z, the pre-conv xBC, x|B|C after the conv, dt, the
  // SSD output, the norm's rstd and output: what the GEMM, norm, SSD and conv backwards read.
  void forward(Ctx& ctx, float* y, const float* x, int64_t B, int64_t T, BlockCache* cache) override {
    STRATA_CHECK(ctx.arena, "mamba2 forward needs ctx.arena");
    Mamba2Cache* mc = prefill_cache<Mamba2Cache>(cache, "mamba2", B, store_.device());
    saved_.clear();
    const int64_t N = B * T, GN = G_ * N_;
    Arena& ar = *ctx.arena;
    Acts a;
    a.z = ar.alloc(N * Di_);
    a.xbc = ar.alloc(N * Cd_);
    a.dtr = ar.alloc(N * H_);
    a.xs = ar.alloc(N * Di_);
    a.Bm = ar.alloc(N * GN);
    a.Cm = ar.alloc(N * GN);
    a.ys = ar.alloc(N * Di_);
    a.yn = ar.alloc(N * Di_);
    a.rstd = ar.alloc(N * G_);
    float* xc = ar.alloc(N * Cd_);
    float* A = neg_exp_a_log(ar);
    a.x = kept_input(ctx, x, N * D_);
    if (N > 0) {
      in_proj(ctx, a.z, a.xbc, a.dtr, a.x, N);
      STRATA_OP(ctx.device, conv1d_causal_forward, xc, a.xbc, w(conv_w_), conv_bias(), B, T, Cd_, K_, true);
      split_xbc(ctx.device, a.xs, a.Bm, a.Cm, xc, N, Di_, GN);
      STRATA_OP(ctx.device, ssd_forward, a.ys, mc ? mc->ssm.data() : nullptr, a.xs, a.dtr, w(dt_b_), A, a.Bm, a.Cm,
                w(d_), nullptr, B, T, H_, P_, G_, N_, Q_);
      STRATA_OP(ctx.device, rmsnorm_gated_forward, a.yn, a.rstd, a.ys, a.z, w(norm_w_), N, Di_, Di_ / G_, eps_);
      linear_forward(ctx, y, a.yn, w(out_w_), out_b_.valid() ? w(out_b_) : nullptr, N, Di_, D_);
    }
    if (mc) {
      // T = 0 leaves the zero state of a fresh cache.
      if (T > 0) STRATA_OP(ctx.device, conv1d_state_from_sequence, mc->conv.data(), a.xbc, B, T, Cd_, K_);
      mc->pos = T;
    }
    if (ctx.training) saved_.keep(a, B, T);
  }

  // dy[B, T, D] -> dx[B, T, D] (assigned); parameter grads accumulated.
  void backward(Ctx& ctx, float* dx, const float* dy, int64_t B, int64_t T) override {
    const Acts& a = saved_.take("mamba2", B, T);
    const int64_t N = B * T, GN = G_ * N_;
    if (N == 0) return;
    Arena& ar = *ctx.arena;
    float* A = neg_exp_a_log(ar);
    float* dyn = ar.alloc(N * Di_);
    float* dys = ar.alloc(N * Di_);
    float* dz = ar.alloc(N * Di_);
    float* dxs = ar.alloc(N * Di_);
    float* dBm = ar.alloc(N * GN);
    float* dCm = ar.alloc(N * GN);
    float* ddtr = ar.alloc(N * H_);
    float* dxc = ar.alloc(N * Cd_);
    float* dxbc = ar.alloc(N * Cd_);
    float* dA = ar.alloc_zeroed(H_);

    linear_backward(ctx, dyn, g(out_w_), out_b_.valid() ? g(out_b_) : nullptr, dy, a.yn, w(out_w_), N, Di_, D_, false);
    STRATA_OP(ctx.device, rmsnorm_gated_backward, dys, dz, g(norm_w_), dyn, a.ys, a.z, w(norm_w_), a.rstd, N, Di_,
              Di_ / G_);
    STRATA_OP(ctx.device, ssd_backward, dxs, ddtr, dA, dBm, dCm, g(d_), g(dt_b_), dys, a.xs, a.dtr, w(dt_b_), A, a.Bm,
              a.Cm, w(d_), B, T, H_, P_, G_, N_, Q_);
    // A = -exp(A_log), so dA_log = dA * A.
    float* ga = g(a_log_);
    STRATA_OP(ctx.device, mul_add_inplace, ga, dA, A, H_);
    pack_xbc(ctx.device, dxc, dxs, dBm, dCm, N, Di_, GN);
    STRATA_OP(ctx.device, conv1d_causal_backward, dxbc, g(conv_w_), conv_b_.valid() ? g(conv_b_) : nullptr, dxc,
              a.xbc, w(conv_w_), conv_bias(), B, T, Cd_, K_, true);
    // The three row blocks of in_proj all read x: their input grads add up in dx.
    const float* win = w(in_w_);
    float* gin = g(in_w_);
    float* gbin = in_b_.valid() ? g(in_b_) : nullptr;
    linear_backward(ctx, dx, gin, gbin, dz, a.x, win, N, D_, Di_, false);
    linear_backward(ctx, dx, gin + Di_ * D_, gbin ? gbin + Di_ : nullptr, dxbc, a.x, win + Di_ * D_, N, D_, Cd_, true);
    linear_backward(ctx, dx, gin + (Di_ + Cd_) * D_, gbin ? gbin + Di_ + Cd_ : nullptr, ddtr, a.x,
                    win + (Di_ + Cd_) * D_, N, D_, H_, true);
  }

  std::unique_ptr<BlockCache> allocate_cache(int64_t B, int64_t) const override {
    auto c = std::make_unique<Mamba2Cache>();
    c->batch = B;
    c->conv = DeviceArray<float>::zeros(size_t(B * Cd_ * (K_ - 1)), store_.device());
    c->ssm = DeviceArray<float>::zeros(size_t(B * H_ * P_ * N_), store_.device());
    return c;
  }

  // x[B, D] -> y[B, D]: one token through the recurrent form (conv state shift, SSM state update).
  // Temporaries come from ctx.arena; any saved training state is left alone.
  void step(Ctx& ctx, float* y, const float* x, int64_t B, BlockCache* cache) override {
    STRATA_CHECK(ctx.arena, "mamba2 step needs ctx.arena");
    STRATA_CHECK(cache, "mamba2 step needs a cache (allocate_cache)");
    Mamba2Cache* mc = cache_as<Mamba2Cache>(cache, "mamba2", B, store_.device());
    recurrent_rows(ctx, y, x, B, RowStates{mc->conv.data(), mc->ssm.data()});
    ++mc->pos;
  }

  std::unique_ptr<BlockRowCache> allocate_row_cache(const PoolSizes& sizes) const override {
    return SlotPool::make(sizes, Cd_ * (K_ - 1), H_ * P_ * N_, store_.device());
  }

  // x[n, D] -> y[n, D] over a RowBatch: step's body, each row on its sequence's state slot.
  void step_rows(Ctx& ctx, float* y, const float* x, const RowStep& rs, BlockRowCache* pools) override {
    STRATA_CHECK(ctx.arena, "mamba2 step_rows needs ctx.arena");
    SlotPool* sp = row_pools_as<SlotPool>(pools, "mamba2", store_.device());
    STRATA_CHECK(sp->conv_size == Cd_ * (K_ - 1) && sp->ssm_size == H_ * P_ * N_, "mamba2 pools of another shape");
    if (rs.n == 0) return;
    recurrent_rows(ctx, y, x, rs.n, RowStates{nullptr, nullptr, sp, rs.state_slot.data()});
  }

  // Multiply-adds x2 per token of the projections, the conv and the chunked SSD at context T: per
  // chunk of Q' = min(chunk, T) tokens, C.B^T and the masked intra-chunk matmul cost ~Q'/2 per
  // (token, group state) and (token, head channel); reading and passing the state cost P N per head.
  double flops_per_token(int64_t T) const override {
    const double q = double(std::clamp<int64_t>(T, 1, Q_) + 1) / 2.0;
    const double proj = double(D_) * double(Di_ + Cd_ + H_) + double(Di_) * double(D_);
    const double ssd = double(G_ * N_) * q + double(Di_) * q + 2.0 * double(Di_) * double(N_) + double(Di_);
    return 2.0 * (proj + double(Cd_) * double(K_) + ssd);
  }
  int64_t cache_bytes_fixed() const override {
    return int64_t(sizeof(float)) * (Cd_ * (K_ - 1) + H_ * P_ * N_);
  }

 private:
  // step's and step_rows' body over n rows: in_proj, the split, the gated norm and out_proj over all
  // rows; the conv and the SSD recurrence with step's kernels on each row's state (RowStates::each).
  void recurrent_rows(Ctx& ctx, float* y, const float* x, int64_t n, const RowStates& st) {
    const int64_t GN = G_ * N_;
    Arena& ar = *ctx.arena;
    float* z = ar.alloc(n * Di_);
    float* xbc = ar.alloc(n * Cd_);
    float* dtr = ar.alloc(n * H_);
    float* xc = ar.alloc(n * Cd_);
    float* xs = ar.alloc(n * Di_);
    float* Bm = ar.alloc(n * GN);
    float* Cm = ar.alloc(n * GN);
    float* ys = ar.alloc(n * Di_);
    float* yn = ar.alloc(n * Di_);
    float* rstd = ar.alloc(n * G_);
    float* A = neg_exp_a_log(ar);
    in_proj(ctx, z, xbc, dtr, x, n);
    st.each(n, [&](int64_t i, int64_t m, float* conv, float*) {
      STRATA_OP(ctx.device, conv1d_causal_step, xc + i * Cd_, conv, xbc + i * Cd_, w(conv_w_), conv_bias(), m, Cd_, K_,
                true);
    });
    split_xbc(ctx.device, xs, Bm, Cm, xc, n, Di_, GN);
    st.each(n, [&](int64_t i, int64_t m, float*, float* ssm) {
      STRATA_OP(ctx.device, ssd_step, ys + i * Di_, ssm, xs + i * Di_, dtr + i * H_, w(dt_b_), A, Bm + i * GN,
                Cm + i * GN, w(d_), m, H_, P_, G_, N_);
    });
    STRATA_OP(ctx.device, rmsnorm_gated_forward, yn, rstd, ys, z, w(norm_w_), n, Di_, Di_ / G_, eps_);
    linear_forward(ctx, y, yn, w(out_w_), out_b_.valid() ? w(out_b_) : nullptr, n, Di_, D_);
  }

  struct Acts {
    const float* x = nullptr;                                            // block input [N, D]
    float *z = nullptr, *xs = nullptr, *ys = nullptr, *yn = nullptr;     // [N, d_inner]
    float *xbc = nullptr;                                                // pre-conv x|B|C [N, conv_dim]
    float *Bm = nullptr, *Cm = nullptr;                                  // [N, G N]
    float *dtr = nullptr;                                                // [N, H]
    float *rstd = nullptr;                                               // [N, G]
  };

  const float* w(ParamRef r) const { return store_.data(r); }
  float* g(ParamRef r) { return store_.grad(r); }
  const float* conv_bias() const { return conv_b_.valid() ? w(conv_b_) : nullptr; }

  // A = -exp(A_log) [H], from the current parameters.
  float* neg_exp_a_log(Arena& ar) const {
    float* A = ar.alloc(H_);
    STRATA_OP(ar.device(), neg_exp, A, w(a_log_), H_);  // the arena lives where the work runs
    return A;
  }

  // x[N, D] -> z[N, d_inner], xbc[N, conv_dim], dtr[N, H] through in_proj's row blocks.
  void in_proj(Ctx& ctx, float* z, float* xbc, float* dtr, const float* x, int64_t N) const {
    const float* win = w(in_w_);
    const float* bin = in_b_.valid() ? w(in_b_) : nullptr;
    linear_forward(ctx, z, x, win, bin, N, D_, Di_);
    linear_forward(ctx, xbc, x, win + Di_ * D_, bin ? bin + Di_ : nullptr, N, D_, Cd_);
    linear_forward(ctx, dtr, x, win + (Di_ + Cd_) * D_, bin ? bin + Di_ + Cd_ : nullptr, N, D_, H_);
  }

  ParamStore& store_;
  int64_t D_, Di_, P_, G_, N_, K_, Q_, H_ = 0, Cd_ = 0;
  float eps_;
  ParamRef in_w_, in_b_, conv_w_, conv_b_, dt_b_, a_log_, d_, norm_w_, out_w_, out_b_;
  SavedActs<Acts> saved_;
};

}  // namespace

std::unique_ptr<Block> make_mamba2(const ModelConfig& cfg, ParamStore& store, const std::string& prefix) {
  return std::make_unique<Mamba2>(cfg, store, prefix);
}

}  // namespace strata
