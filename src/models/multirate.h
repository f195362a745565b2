#pragma once
// The two-rate robot policy of a config's robot section: a planner (any strata pattern) that sees
// the observation at each planner tick and outputs a plan latent [P] and/or an action chunk [K, A],
// and a controller (a small pattern) that sees, at every control tick, the newest observation, the
// newest plan's latent and the plan's age. Both live in one ParamStore ("planner.*",
// "controller.*") so one AdamW and one checkpoint cover them, and they train together: the
// controller's loss reaches the planner through the latent.
//
// Time alignment (the same as at run time, with ratio = control_hz / planner_hz and d =
// planner_delay_ticks): in a segment of W control ticks starting at a planner tick, the planner runs
// at local ticks 0, ratio, 2 ratio, ... and the controller at tick i uses the plan of tick
//   t0(i) = max(0, floor((i - d) / ratio)) * ratio,   age(i) = i - t0(i)  (fed as age / ratio).
// Before the first plan could have arrived (i < d) the controller sees the first plan early: at run
// time the executor plans once before the first control tick.
// Inputs are normalised (train/episodes.h NormStats); outputs are normalised actions.
#include <cstdint>
#include <vector>

#include "core/params.h"
#include "models/action_loss.h"
#include "models/config.h"
#include "models/continuous_model.h"

namespace strata {

// B segments of W control ticks (row-major).
struct RobotBatch {
  int64_t B = 0, W = 0;
  std::vector<float> obs;         // [B, W, obs_dim]
  std::vector<float> actions;     // [B, W, A]: the demonstrated action at each control tick
  std::vector<float> mask;        // [B, W]: 0 past the episode's end
  std::vector<float> chunk;       // [B, Tp, K, A]: actions t0 .. t0 + K - 1 of each planner tick
  std::vector<float> chunk_mask;  // [B, Tp, K]
};

class MultiRatePolicy {
 public:
  // blocks: the model section (block settings; d_model and pattern are replaced per half).
  MultiRatePolicy(const ModelConfig& blocks, const RobotConfig& rc, int64_t obs_dim, int64_t action_dim, uint64_t seed);
  struct Uninitialised {};
  MultiRatePolicy(const ModelConfig& blocks, const RobotConfig& rc, int64_t obs_dim, int64_t action_dim, Uninitialised);

  ParamStore& params() { return params_; }
  const ParamStore& params() const { return params_; }
  ContinuousModel& planner() { return planner_; }
  ContinuousModel& controller() { return controller_; }
  int64_t obs_dim() const { return obs_dim_; }
  int64_t action_dim() const { return A_; }
  int64_t latent() const { return P_; }
  int64_t chunk() const { return K_; }
  int64_t ratio() const { return ratio_; }
  int64_t plan_width() const { return P_ + K_ * A_; }           // the planner's output per tick
  int64_t controller_in() const { return obs_dim_ + P_ + 1; }  // observation, latent, age
  int64_t planner_ticks(int64_t W) const { return (W + ratio_ - 1) / ratio_; }
  int64_t plan_index(int64_t i) const;  // t0(i) / ratio

  // Training: the controller's loss plus (K > 0) the planner's chunk loss; saves for backward.
  float forward_loss(Ctx& ctx, const RobotBatch& b);
  void backward(Ctx& ctx, float loss_scale = 1.0f);
  float eval_loss(Ctx& ctx, const RobotBatch& b);
  float last_controller_loss() const { return loss_c_; }
  float last_chunk_loss() const { return loss_p_; }

  // Run time, one sequence (B = 1), caches from planner().allocate_cache / controller().allocate_cache:
  // obs[obs_dim] -> plan[plan_width()]; and (obs, the plan's latent, its age in control ticks) ->
  // action[A]. Both advance their cache by one position.
  void plan(Ctx& ctx, ModelCache& cache, const float* obs, float* plan);
  void act(Ctx& ctx, ModelCache& cache, const float* obs, const float* latent, int64_t age, float* action);
  // The controller's input row: [obs, latent (P), age / ratio].
  void controller_input(float* row, const float* obs, const float* latent, int64_t age) const;

 private:
  void declare(const ModelConfig& blocks, const RobotConfig& rc);
  float run(Ctx& ctx, const RobotBatch& b, bool train);

  int64_t obs_dim_, A_, P_, K_, ratio_, delay_;
  ActionLoss loss_kind_;
  ParamStore params_;
  ContinuousModel planner_, controller_;
  struct Saved {
    bool valid = false;
    int64_t B = 0, W = 0;
    float *dcout = nullptr, *dpout = nullptr;  // loss gradients (unscaled)
  } saved_;
  float loss_c_ = 0, loss_p_ = 0;
};

}  // namespace strata
