#include "load/robot_runtime.h"

#include <algorithm>

#include "core/error.h"

namespace strata {

rt::PlanShape plan_shape_of(const MultiRatePolicy& p) {
  return {int(p.latent()), int(p.chunk()), int(p.action_dim())};
}

void normalize_obs(const NormStats& s, const float* raw, float* out) {
  int64_t off = 0;
  for (auto& [key, st] : s.obs) {  // std::map: sorted key order, as the trainer concatenates
    st.normalize(raw + off, out + off);
    off += int64_t(st.mean.size());
  }
}

void unnormalize_action(const NormStats& s, const float* norm, float* out) { s.actions.unnormalize(norm, out); }

RobotPlanner::RobotPlanner(LoadedRobot& robot, int64_t max_ticks)
    : r_(robot), max_ticks_(max_ticks), obs_(size_t(robot.policy->obs_dim())), plan_(size_t(robot.policy->plan_width())) {
  reset();
}

void RobotPlanner::reset() { cache_ = r_.policy->planner().allocate_cache(1, max_ticks_); }

void RobotPlanner::plan(const rt::Observation& obs, rt::PlanRecord& out) {
  MultiRatePolicy& p = *r_.policy;
  STRATA_CHECK(int64_t(obs.x.size()) == p.obs_dim(), "planner: observation of {} floats, the policy takes {}",
               obs.x.size(), p.obs_dim());
  arena_.reset();
  Ctx ctx{Device::cpu, &arena_, false};
  normalize_obs(r_.stats, obs.x.data(), obs_.data());
  p.plan(ctx, cache_, obs_.data(), plan_.data());
  if (p.latent() > 0) std::copy_n(plan_.data(), p.latent(), out.latent);
  for (int64_t k = 0; k < p.chunk(); ++k)
    unnormalize_action(r_.stats, plan_.data() + p.latent() + k * p.action_dim(), out.chunk + k * p.action_dim());
}

RobotController::RobotController(LoadedRobot& robot, int64_t max_ticks)
    : r_(robot),
      max_ticks_(max_ticks),
      obs_(size_t(robot.policy->obs_dim())),
      zeros_(size_t(std::max<int64_t>(robot.policy->latent(), 1)), 0.0f),
      action_(size_t(robot.policy->action_dim())) {
  reset();
}

void RobotController::reset() { cache_ = r_.policy->controller().allocate_cache(1, max_ticks_); }

void RobotController::act(const rt::Observation& obs, const rt::PlanView& plan, int64_t plan_age_ticks,
                          std::span<float> out_action) {
  MultiRatePolicy& p = *r_.policy;
  arena_.reset();
  Ctx ctx{Device::cpu, &arena_, false};
  normalize_obs(r_.stats, obs.x.data(), obs_.data());
  const float* latent = plan.plan ? plan.plan->latent : zeros_.data();
  p.act(ctx, cache_, obs_.data(), latent, plan.plan ? plan_age_ticks : 0, action_.data());
  unnormalize_action(r_.stats, action_.data(), out_action.data());
}

}  // namespace strata
