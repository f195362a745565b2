#pragma once
// strata.Policy: a trained two-rate robot policy (train/robot_runtime.h) driven one control tick
// per act() call, for Python robot loops that step a simulator themselves. The policy keeps its
// own clock: call i (from 0 after reset) runs the planner when i is a multiple of the rate ratio
// (control_hz / planner_hz) and the controller on every call. A plan computed at tick t0 is first
// used at tick t0 + planner_delay_ticks, the simulated delay training used (models/multirate.h:
// t0(i) = max(0, floor((i - d) / ratio)) ratio), so the closed loop sees what training saw.
// handoff: empty -> act() returns the controller's action; "hold" | "ensemble" | "rtc" -> it returns
// the planner's action chunk through that hand-off policy (infer/realtime/handoff.h), the
// controller still running every call.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "infer/realtime/handoff.h"
#include "load/robot_runtime.h"

namespace strata::py {

class Policy {
 public:
  Policy(const std::string& checkpoint, const std::optional<std::string>& handoff);
  void reset();
  // obs[obs_dim] (raw, unnormalised) -> out[action_dim] (raw). Records the call's latency.
  void act(const float* obs, float* out);

  int64_t obs_dim() const { return robot_.policy->obs_dim(); }
  int64_t action_dim() const { return robot_.policy->action_dim(); }
  int planner_hz() const { return robot_.config.robot.planner_hz; }
  int control_hz() const { return robot_.config.robot.control_hz; }
  int64_t ratio() const { return robot_.policy->ratio(); }
  int64_t delay_ticks() const { return robot_.config.robot.planner_delay_ticks; }
  int64_t tick() const { return tick_; }
  int64_t planner_calls() const { return planner_calls_; }
  bool last_planned() const { return last_planned_; }
  const std::vector<double>& latency_us() const { return latency_us_; }
  void clear_latency() { latency_us_.clear(); }
  std::string handoff() const;

 private:
  LoadedRobot robot_;
  std::unique_ptr<RobotPlanner> planner_;
  std::unique_ptr<RobotController> controller_;
  std::unique_ptr<rt::Handoff> handoff_;
  rt::PlanShape shape_;
  // A ring of plans: the newest ones, enough to cover the delay (plan j lives in slot j % n).
  std::vector<std::vector<float>> storage_;
  std::vector<rt::PlanRecord> ring_;
  int64_t tick_ = 0, planner_calls_ = 0, used_plan_ = -1;
  bool last_planned_ = false;
  std::vector<double> latency_us_;
};

}  // namespace strata::py
