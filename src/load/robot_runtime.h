#pragma once
// A trained robot policy (load_robot) behind the real-time executor's interfaces
// (infer/realtime/interfaces.h): RobotPlanner runs the planner one step per planner tick,
// RobotController the controller one step per control tick. Each normalises its observation with
// the checkpoint's statistics and unnormalises the actions it emits, and owns its cache, arena and
// buffers, all sized at construction: after the first call (which grows the arena to its working
// size) a call does not allocate. The executor's warm-start plan is that first planner call.
// The controller reads the newest plan's latent and its age; its action is the policy's action
// (the plan's chunk, through the hand-off policy, is what PlanView::action holds: a fallback the
// caller may use, e.g. before the controller exists or to compare).
#include <cstdint>
#include <vector>

#include "core/arena.h"
#include "infer/realtime/interfaces.h"
#include "train/robot_trainer.h"

namespace strata {

rt::PlanShape plan_shape_of(const MultiRatePolicy& p);

class RobotPlanner : public rt::Planner {
 public:
  // max_ticks: planner steps before reset() is needed (attention caches grow with it).
  RobotPlanner(LoadedRobot& robot, int64_t max_ticks = 1 << 14);
  void reset();  // a new episode: an empty cache
  void plan(const rt::Observation& obs, rt::PlanRecord& out) override;

 private:
  LoadedRobot& r_;
  int64_t max_ticks_;
  Arena arena_;
  ModelCache cache_;
  std::vector<float> obs_, plan_;
};

class RobotController : public rt::Controller {
 public:
  RobotController(LoadedRobot& robot, int64_t max_ticks = 1 << 20);
  void reset();
  void act(const rt::Observation& obs, const rt::PlanView& plan, int64_t plan_age_ticks,
           std::span<float> out_action) override;

 private:
  LoadedRobot& r_;
  int64_t max_ticks_;
  Arena arena_;
  ModelCache cache_;
  std::vector<float> obs_, zeros_, action_;
};

// Observation vector (the checkpoint's keys concatenated in sorted order) -> normalised, and
// normalised action -> raw.
void normalize_obs(const NormStats& s, const float* raw, float* out);
void unnormalize_action(const NormStats& s, const float* norm, float* out);

}  // namespace strata
