#include "policy.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"

namespace strata::py {

Policy::Policy(const std::string& checkpoint, const std::optional<std::string>& handoff)
    : robot_(load_robot(checkpoint)) {
  planner_ = std::make_unique<RobotPlanner>(robot_);
  controller_ = std::make_unique<RobotController>(robot_);
  shape_ = plan_shape_of(*robot_.policy);
  if (handoff && !handoff->empty()) {
    if (shape_.chunk_len == 0)
      throw InputError("handoff='" + *handoff + "' needs an action chunk, and this checkpoint's planner emits none (robot.chunk: 0)");
    rt::HandoffConfig hc;
    hc.policy = rt::parse_handoff_policy(*handoff);
    handoff_ = std::make_unique<rt::Handoff>(hc, shape_, int(std::max<int64_t>(1, shape_.chunk_len / ratio() + 1)));
  }
  const int64_t n = delay_ticks() / ratio() + 2;
  storage_.assign(size_t(n), std::vector<float>(size_t(std::max<int64_t>(shape_.floats(), 1))));
  ring_.resize(size_t(n));
  for (int64_t j = 0; j < n; ++j) {
    ring_[j].shape = shape_;
    ring_[j].latent = storage_[j].data();
    ring_[j].chunk = storage_[j].data() + shape_.latent_dim;
  }
  latency_us_.reserve(1 << 16);
}

std::string Policy::handoff() const { return handoff_ ? rt::handoff_policy_name(handoff_->config().policy) : ""; }

void Policy::reset() {
  planner_->reset();
  controller_->reset();
  if (handoff_) handoff_->reset();
  tick_ = 0, planner_calls_ = 0, used_plan_ = -1, last_planned_ = false;
}

void Policy::act(const float* obs, float* out) {
  const auto t_start = std::chrono::steady_clock::now();
  const int64_t i = tick_, r = ratio(), d = delay_ticks(), n = int64_t(ring_.size());
  rt::Observation o{i, 0, {obs, size_t(obs_dim())}};
  last_planned_ = i % r == 0;
  if (last_planned_) {
    rt::PlanRecord& rec = ring_[size_t((i / r) % n)];
    planner_->plan(o, rec);
    rec.seq = ++planner_calls_;
    rec.planner_tick = i / r;
    rec.obs_tick = i;
  }
  // The plan this tick uses, as in training: t0(i) = max(0, floor((i - d) / ratio)) * ratio.
  const int64_t j = std::max<int64_t>(0, (i - d) >= 0 ? (i - d) / r : 0);
  const rt::PlanRecord& plan = ring_[size_t(j % n)];
  const bool fresh = j != used_plan_;
  if (fresh && handoff_) handoff_->on_plan(plan, i);
  used_plan_ = j;
  rt::PlanView view{&plan, nullptr, fresh};
  controller_->act(o, view, i - j * r, {out, size_t(action_dim())});
  if (handoff_) handoff_->action(i, out);
  ++tick_;
  latency_us_.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t_start).count());
}

}  // namespace strata::py
