#pragma once
// How the controller gets "the planner's action for this control tick" out of a stream of action
// chunks (issue 10, item 2). Three policies:
//   hold      the newest chunk, row (tick - chunk start) / stride.
//   ensemble  ACT's temporal ensembling (Zhao et al. 2023, "Learning Fine-Grained Bimanual
//             Manipulation with Low-Cost Hardware", section 3.3 and imitate_episodes.py): every
//             stored chunk that predicted this tick votes, weighted w_i = exp(-m i) with i = 0 the
//             OLDEST prediction, normalised by the sum of the weights. m = 0.01 is ACT's default.
//   rtc       real-time chunking (Black, Galliker, Levine 2025, "Real-Time Execution of Action
//             Chunking Flow Policies"; openpi's get_prefix_weights): the d rows committed while
//             the new chunk was being computed are frozen to the previous chunk, the rows up to
//             the end of the overlap are blended in with a decaying weight, the rest is the new
//             chunk. d is measured on each plan (the control ticks between its observation and its
//             arrival), never configured. RTC proper uses these weights to guide a flow policy's
//             denoising; with a chunk head that emits its chunk in one pass the same weights blend
//             the two chunks directly: out_i = w_i prev_i + (1 - w_i) new_i.
// Everything is allocated by the constructor; on_plan and action allocate nothing.
#include <cstdint>
#include <string_view>
#include <vector>

#include "infer/realtime/plan_buffer.h"

namespace strata::rt {

enum class HandoffPolicy { hold, ensemble, rtc };
enum class RtcSchedule { exp, linear };

HandoffPolicy parse_handoff_policy(std::string_view s);  // "hold" | "ensemble" | "rtc", else InputError
const char* handoff_policy_name(HandoffPolicy p);

struct HandoffConfig {
  HandoffPolicy policy = HandoffPolicy::hold;
  int stride = 1;             // control ticks per chunk row (the chunk's action rate = control_hz / stride)
  float ensemble_m = 0.01f;   // ACT's m (their code calls it k)
  int ensemble_chunks = 0;    // chunks kept for ensembling; 0: every chunk that can still overlap
  RtcSchedule rtc_schedule = RtcSchedule::exp;
  int rtc_horizon = 0;        // end of the soft blend, in rows of the new chunk; 0: the whole overlap
};

// ACT's temporal ensemble of n predictions for one tick. actions[i] points at action_dim floats,
// actions[0] the oldest prediction. out = sum_i exp(-m i) actions[i] / sum_i exp(-m i). n >= 1.
void temporal_ensemble(const float* const* actions, int n, int action_dim, float m, float* out);

// RTC's soft mask weight for row i of the new chunk, given the measured delay d (rows committed)
// and the end of the overlap (rows >= end ignore the previous chunk). openpi's get_prefix_weights:
// start = min(d, end); w = 1 for i < start; linear: (end - i) / (end - start + 1), exp: that c times
// (e^c - 1) / (e - 1); w = 0 for i >= end.
float rtc_weight(int i, int d, int end, RtcSchedule s);

// out[i] = w_i prev[i] + (1 - w_i) next[i] for rows i < end (prev has at least end rows), next[i]
// beyond; rows [chunk_len, action_dim]. out may not alias prev or next.
void rtc_blend(const float* prev, const float* next, int chunk_len, int action_dim, int d, int end, RtcSchedule s,
               float* out);

class Handoff {
 public:
  // max_chunks: chunks the ensemble keeps (ignored by hold and rtc); >= 1.
  Handoff(const HandoffConfig& cfg, const PlanShape& shape, int max_chunks);

  // A new plan arrived and is first used at control tick now_tick (>= its obs_tick).
  void on_plan(const PlanRecord& plan, int64_t now_tick);
  // The planner's action for control tick `tick` into out[action_dim]. False before any chunk.
  // A tick past the end of every chunk gets the newest chunk's last row (and counts as exhausted).
  bool action(int64_t tick, float* out);

  void reset();
  int64_t last_delay_rows() const { return last_delay_rows_; }  // d of the newest plan, in rows
  int64_t exhausted_ticks() const { return exhausted_; }
  const HandoffConfig& config() const { return cfg_; }

 private:
  struct Chunk {
    int64_t start = 0;  // control tick of row 0
    float* rows = nullptr;
  };
  int64_t row_of(const Chunk& c, int64_t tick) const;
  const float* row_clamped(const Chunk& c, int64_t tick);

  HandoffConfig cfg_;
  int K_, A_, max_chunks_;
  std::vector<float> storage_;
  std::vector<Chunk> ring_;                // ensemble: the newest max_chunks_ chunks; hold/rtc: [active, spare]
  std::vector<const float*> votes_;        // ensemble scratch: one pointer per stored chunk
  int count_ = 0, newest_ = -1;            // chunks stored, index of the newest in ring_
  int64_t last_delay_rows_ = 0, exhausted_ = 0;
};

}  // namespace strata::rt
