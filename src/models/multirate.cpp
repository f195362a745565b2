#include "models/multirate.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace strata {

namespace {
std::string expand(const RobotNetConfig& n) {
  std::string p;
  for (int r = 0; r < n.repeat; ++r) p += n.pattern;
  return p;
}
ModelConfig half(ModelConfig m, const RobotNetConfig& n) {
  m.d_model = n.d_model;
  m.pattern = n.pattern;
  m.repeat = n.repeat;
  // Sizes that scale with the width follow this half's d_model, not the model section's (whose
  // config arrives resolved: these hold the model section's derived values).
  m.attention.head_dim = 0;
  m.attention.rope_dims = 0;
  m.attention.qk_nope_head_dim = m.attention.qk_rope_head_dim = m.attention.v_head_dim = m.attention.kv_lora_rank = 0;
  m.mlp.hidden = 0;
  m.moe.hidden = 0;
  m.mamba.dt_rank = 0;
  return m;
}
}  // namespace

MultiRatePolicy::MultiRatePolicy(const ModelConfig& blocks, const RobotConfig& rc, int64_t obs_dim, int64_t action_dim,
                                 uint64_t seed)
    : obs_dim_(obs_dim), A_(action_dim) {
  declare(blocks, rc);
  params_.allocate(seed);
}

MultiRatePolicy::MultiRatePolicy(const ModelConfig& blocks, const RobotConfig& rc, int64_t obs_dim, int64_t action_dim,
                                 Uninitialised)
    : obs_dim_(obs_dim), A_(action_dim) {
  declare(blocks, rc);
  params_.allocate(0, false);
}

void MultiRatePolicy::declare(const ModelConfig& blocks, const RobotConfig& rc) {
  P_ = rc.latent, K_ = rc.chunk, ratio_ = rc.ratio(), delay_ = rc.planner_delay_ticks;
  loss_kind_ = action_loss_from(rc.loss);
  STRATA_CHECK(ratio_ >= 1 && P_ >= 0 && K_ >= 0 && P_ + K_ > 0 && delay_ >= 0,
               "robot: bad shape (ratio {}, latent {}, chunk {}, delay {})", ratio_, P_, K_, delay_);
  planner_.declare(half(blocks, rc.planner), expand(rc.planner), obs_dim_, plan_width(), params_, "planner.");
  controller_.declare(half(blocks, rc.controller), expand(rc.controller), controller_in(), A_, params_, "controller.");
}

int64_t MultiRatePolicy::plan_index(int64_t i) const {
  const int64_t t = i - delay_;
  return t <= 0 ? 0 : t / ratio_;
}

void MultiRatePolicy::controller_input(float* row, const float* obs, const float* latent, int64_t age) const {
  std::memcpy(row, obs, sizeof(float) * size_t(obs_dim_));
  if (P_ > 0) std::memcpy(row + obs_dim_, latent, sizeof(float) * size_t(P_));
  row[obs_dim_ + P_] = float(age) / float(ratio_);
}

float MultiRatePolicy::run(Ctx& ctx, const RobotBatch& b, bool train) {
  const int64_t B = b.B, W = b.W, Tp = planner_ticks(W), PW = plan_width(), CI = controller_in();
  Arena& Ar = *ctx.arena;
  float* pin = Ar.alloc(B * Tp * obs_dim_);
  for (int64_t s = 0; s < B; ++s)
    for (int64_t j = 0; j < Tp; ++j)
      std::memcpy(pin + (s * Tp + j) * obs_dim_, b.obs.data() + (s * W + j * ratio_) * obs_dim_,
                  sizeof(float) * size_t(obs_dim_));
  float* pout = Ar.alloc(B * Tp * PW);
  if (train) planner_.forward_train(ctx, params_, pout, pin, B, Tp);
  else planner_.forward(ctx, params_, pout, pin, B, Tp, nullptr);

  float* cin = Ar.alloc(B * W * CI);
  for (int64_t s = 0; s < B; ++s)
    for (int64_t i = 0; i < W; ++i) {
      const int64_t j = plan_index(i);
      controller_input(cin + (s * W + i) * CI, b.obs.data() + (s * W + i) * obs_dim_, pout + (s * Tp + j) * PW,
                       i - j * ratio_);
    }
  float* cout = Ar.alloc(B * W * A_);
  if (train) controller_.forward_train(ctx, params_, cout, cin, B, W);
  else controller_.forward(ctx, params_, cout, cin, B, W, nullptr);
  float* dcout = train ? Ar.alloc(B * W * A_) : nullptr;
  loss_c_ = action_loss(loss_kind_, cout, b.actions.data(), b.mask.data(), B * W, A_, dcout);

  loss_p_ = 0;
  float* dpout = nullptr;
  if (train) {
    dpout = Ar.alloc(B * Tp * PW);
    std::fill(dpout, dpout + B * Tp * PW, 0.0f);
  }
  if (K_ > 0) {
    const int64_t rows = B * Tp * K_;
    float* pc = Ar.alloc(rows * A_);
    float* dpc = train ? Ar.alloc(rows * A_) : nullptr;
    for (int64_t r = 0; r < B * Tp; ++r) std::memcpy(pc + r * K_ * A_, pout + r * PW + P_, sizeof(float) * size_t(K_ * A_));
    loss_p_ = action_loss(loss_kind_, pc, b.chunk.data(), b.chunk_mask.data(), rows, A_, dpc);
    if (train)
      for (int64_t r = 0; r < B * Tp; ++r) std::memcpy(dpout + r * PW + P_, dpc + r * K_ * A_, sizeof(float) * size_t(K_ * A_));
  }
  if (train) saved_ = {true, B, W, dcout, dpout};
  return loss_c_ + loss_p_;
}

float MultiRatePolicy::forward_loss(Ctx& ctx, const RobotBatch& b) {
  STRATA_CHECK(ctx.training, "forward_loss needs ctx.training (it saves activations for backward)");
  return run(ctx, b, true);
}

float MultiRatePolicy::eval_loss(Ctx& ctx, const RobotBatch& b) {
  const bool was = ctx.training;
  ctx.training = false;
  float l = run(ctx, b, false);
  ctx.training = was;
  return l;
}

void MultiRatePolicy::backward(Ctx& ctx, float loss_scale) {
  STRATA_CHECK(saved_.valid, "MultiRatePolicy::backward without a preceding forward_loss");
  saved_.valid = false;
  const int64_t B = saved_.B, W = saved_.W, Tp = planner_ticks(W), PW = plan_width(), CI = controller_in();
  float* dcout = saved_.dcout;
  float* dpout = saved_.dpout;
  if (loss_scale != 1.0f) {
    for (int64_t i = 0; i < B * W * A_; ++i) dcout[i] *= loss_scale;
    for (int64_t i = 0; i < B * Tp * PW; ++i) dpout[i] *= loss_scale;
  }
  float* dcin = P_ > 0 ? ctx.arena->alloc(B * W * CI) : nullptr;
  controller_.backward(ctx, params_, dcin, dcout);
  // The latent each control tick saw came from one planner tick: its gradient goes back there.
  if (P_ > 0)
    for (int64_t s = 0; s < B; ++s)
      for (int64_t i = 0; i < W; ++i) {
        const float* g = dcin + (s * W + i) * CI + obs_dim_;
        float* d = dpout + (s * Tp + plan_index(i)) * PW;
        for (int64_t p = 0; p < P_; ++p) d[p] += g[p];
      }
  planner_.backward(ctx, params_, nullptr, dpout);
}

void MultiRatePolicy::plan(Ctx& ctx, ModelCache& cache, const float* obs, float* plan) {
  planner_.step(ctx, params_, plan, obs, cache);
}

void MultiRatePolicy::act(Ctx& ctx, ModelCache& cache, const float* obs, const float* latent, int64_t age, float* action) {
  float* row = ctx.arena->alloc(controller_in());
  controller_input(row, obs, latent, age);
  controller_.step(ctx, params_, action, row, cache);
}

}  // namespace strata
