#include "infer/realtime/handoff.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"

namespace strata::rt {

HandoffPolicy parse_handoff_policy(std::string_view s) {
  if (s == "hold") return HandoffPolicy::hold;
  if (s == "ensemble") return HandoffPolicy::ensemble;
  if (s == "rtc") return HandoffPolicy::rtc;
  throw InputError(fmt::format("hand-off policy '{}': expected hold, ensemble or rtc", s));
}

const char* handoff_policy_name(HandoffPolicy p) {
  switch (p) {
    case HandoffPolicy::hold: return "hold";
    case HandoffPolicy::ensemble: return "ensemble";
    case HandoffPolicy::rtc: return "rtc";
  }
  return "?";
}

void temporal_ensemble(const float* const* actions, int n, int action_dim, float m, float* out) {
  // Weights in double and normalised after: n is small, and exp(-m i) with i = 0 for the oldest.
  double wsum = 0.0;
  for (int a = 0; a < action_dim; ++a) out[a] = 0.0f;
  for (int i = 0; i < n; ++i) wsum += std::exp(-double(m) * i);
  for (int i = 0; i < n; ++i) {
    const float w = float(std::exp(-double(m) * i) / wsum);
    for (int a = 0; a < action_dim; ++a) out[a] += w * actions[i][a];
  }
}

float rtc_weight(int i, int d, int end, RtcSchedule s) {
  if (i >= end) return 0.0f;
  const int start = std::min(d, end);
  if (i < start) return 1.0f;
  // (start - 1 - i) / (end - start + 1) + 1 = (end - i) / (end - start + 1), in (0, 1) here
  const double c = double(end - i) / double(end - start + 1);
  if (s == RtcSchedule::linear) return float(c);
  return float(c * std::expm1(c) / (M_E - 1.0));
}

void rtc_blend(const float* prev, const float* next, int chunk_len, int action_dim, int d, int end, RtcSchedule s,
               float* out) {
  for (int i = 0; i < chunk_len; ++i) {
    const float w = rtc_weight(i, d, end, s);
    const int64_t o = int64_t(i) * action_dim;
    for (int a = 0; a < action_dim; ++a)
      out[o + a] = w == 0.0f ? next[o + a] : w * prev[o + a] + (1.0f - w) * next[o + a];
  }
}

Handoff::Handoff(const HandoffConfig& cfg, const PlanShape& shape, int max_chunks)
    : cfg_(cfg), K_(shape.chunk_len), A_(shape.action_dim), max_chunks_(max_chunks) {
  STRATA_CHECK(cfg.stride >= 1, "hand-off: stride must be >= 1, got {}", cfg.stride);
  STRATA_CHECK(max_chunks >= 1, "hand-off: max_chunks must be >= 1, got {}", max_chunks);
  STRATA_CHECK(cfg.rtc_horizon >= 0, "hand-off: rtc_horizon must be >= 0, got {}", cfg.rtc_horizon);
  const int slots = cfg.policy == HandoffPolicy::ensemble ? max_chunks : 2;
  storage_.assign(size_t(slots) * K_ * A_, 0.0f);
  ring_.resize(size_t(slots));
  for (int i = 0; i < slots; ++i) ring_[size_t(i)].rows = storage_.data() + int64_t(i) * K_ * A_;
  votes_.resize(size_t(slots));
}

void Handoff::reset() {
  count_ = 0;
  newest_ = -1;
  last_delay_rows_ = exhausted_ = 0;
}

int64_t Handoff::row_of(const Chunk& c, int64_t tick) const {
  const int64_t dt = tick - c.start;
  return dt >= 0 ? dt / cfg_.stride : -((-dt + cfg_.stride - 1) / cfg_.stride);
}

const float* Handoff::row_clamped(const Chunk& c, int64_t tick) {
  int64_t j = row_of(c, tick);
  if (j >= K_) {
    ++exhausted_;
    j = K_ - 1;
  }
  return c.rows + std::max<int64_t>(j, 0) * A_;
}

void Handoff::on_plan(const PlanRecord& plan, int64_t now_tick) {
  if (K_ == 0) return;
  // Rows already (partly) executed when the plan arrives: ceil((now - obs) / stride).
  const int64_t late = std::max<int64_t>(now_tick - plan.obs_tick, 0);
  last_delay_rows_ = (late + cfg_.stride - 1) / cfg_.stride;
  const size_t bytes = sizeof(float) * size_t(K_) * A_;

  if (cfg_.policy == HandoffPolicy::ensemble) {
    newest_ = (newest_ + 1) % max_chunks_;
    count_ = std::min(count_ + 1, max_chunks_);
    ring_[size_t(newest_)].start = plan.obs_tick;
    std::memcpy(ring_[size_t(newest_)].rows, plan.chunk, bytes);
    return;
  }
  const int into = newest_ < 0 ? 0 : 1 - newest_;
  Chunk& next = ring_[size_t(into)];
  next.start = plan.obs_tick;
  if (cfg_.policy == HandoffPolicy::rtc && newest_ >= 0) {
    const Chunk& prev = ring_[size_t(newest_)];
    // The previous chunk's row for the new chunk's row i is i + shift; it has K - shift rows left.
    const int64_t shift = std::clamp<int64_t>(row_of(prev, plan.obs_tick), 0, K_);
    int end = int(std::max<int64_t>(K_ - shift, 0));
    if (cfg_.rtc_horizon > 0) end = std::min(end, cfg_.rtc_horizon);
    const int d = int(std::min<int64_t>(last_delay_rows_, K_));
    rtc_blend(prev.rows + shift * A_, plan.chunk, K_, A_, d, end, cfg_.rtc_schedule, next.rows);
  } else {
    std::memcpy(next.rows, plan.chunk, bytes);
  }
  newest_ = into;
  count_ = 1;
}

bool Handoff::action(int64_t tick, float* out) {
  if (count_ == 0) return false;
  if (cfg_.policy != HandoffPolicy::ensemble) {
    std::memcpy(out, row_clamped(ring_[size_t(newest_)], tick), sizeof(float) * size_t(A_));
    return true;
  }
  // Oldest first: the slot after the newest is the oldest once the ring is full.
  int n = 0;
  for (int k = count_ - 1; k >= 0; --k) {
    const Chunk& c = ring_[size_t((newest_ - k + max_chunks_) % max_chunks_)];
    const int64_t j = row_of(c, tick);
    if (j >= 0 && j < K_) votes_[size_t(n++)] = c.rows + j * A_;
  }
  if (n == 0) {
    std::memcpy(out, row_clamped(ring_[size_t(newest_)], tick), sizeof(float) * size_t(A_));
    return true;
  }
  temporal_ensemble(votes_.data(), n, A_, cfg_.ensemble_m, out);
  return true;
}

}  // namespace strata::rt
