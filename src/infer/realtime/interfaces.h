#pragma once
// What the real-time executor drives: an observation source, a planner, a controller and an
// action sink. The model side implements Planner and Controller; none of these calls may
// allocate, lock or do I/O when called from the controller thread (Planner::plan runs on its
// own thread and may do what a model's forward does).
#include <cstdint>
#include <span>

#include "infer/realtime/plan_buffer.h"

namespace strata::rt {

struct Observation {
  int64_t tick = 0;     // the control tick it was read for (planner: the control tick of its time)
  int64_t time_ns = 0;  // the sample's own timestamp
  std::span<const float> x;
};

// Read concurrently by the planner thread and the controller thread: read() must be safe to call
// from both at once and must not allocate.
class ObservationSource {
 public:
  virtual ~ObservationSource() = default;
  virtual int dim() const = 0;
  // The newest sample at or before time t_ns (executor clock, ns since the start) into out[dim];
  // returns that sample's timestamp.
  virtual int64_t read(int64_t t_ns, float* out) const = 0;
};

// Runs on the planner thread at planner_hz. Fills out.latent and/or out.chunk (row 0 is the
// action for obs.tick); the executor fills the record's other fields.
class Planner {
 public:
  virtual ~Planner() = default;
  virtual void plan(const Observation& obs, PlanRecord& out) = 0;
};

// What the controller sees of the plan at one control tick.
struct PlanView {
  const PlanRecord* plan = nullptr;  // the newest plan (nullptr: none yet); valid for this call only
  const float* action = nullptr;     // the hand-off policy's action for this tick (nullptr: no chunk)
  bool fresh = false;                // the plan arrived at this tick
};

// Runs on the controller thread at control_hz: no allocation, no locks, no I/O.
class Controller {
 public:
  virtual ~Controller() = default;
  virtual void act(const Observation& obs, const PlanView& plan, int64_t plan_age_ticks, std::span<float> out_action) = 0;
};

// Where each control tick's action goes (a robot, a simulator); same rules as Controller.
class ActionSink {
 public:
  virtual ~ActionSink() = default;
  virtual void apply(int64_t tick, std::span<const float> action) = 0;
};

}  // namespace strata::rt
