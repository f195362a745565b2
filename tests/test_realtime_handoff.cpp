// Hand-off policies on hand-made chunks against hand-computed values: ACT's temporal ensemble,
// real-time chunking's soft mask and blend, and the Handoff class that applies them per tick.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "infer/realtime/handoff.h"

using namespace strata;
using namespace strata::rt;

TEST(RealtimeHandoff, TemporalEnsembleWeightsOldestFirst) {
  // w = exp(-0.5 i) = 1, 0.6065, 0.3679 (i = 0 the oldest); out = sum w a / sum w
  const float a0[2] = {1, 0}, a1[2] = {2, 10}, a2[2] = {4, 20};
  const float* votes[3] = {a0, a1, a2};
  float out[2];
  temporal_ensemble(votes, 3, 2, 0.5f, out);
  EXPECT_NEAR(out[0], 1.8661670553960412, 1e-6);
  EXPECT_NEAR(out[1], 6.7984333217019355, 1e-6);
  // m = 0: the plain mean; one vote: itself
  temporal_ensemble(votes, 3, 2, 0.0f, out);
  EXPECT_NEAR(out[0], 7.0 / 3, 1e-6);
  EXPECT_NEAR(out[1], 10.0, 1e-6);
  temporal_ensemble(votes + 2, 1, 2, 0.01f, out);
  EXPECT_FLOAT_EQ(out[0], 4.0f);
  EXPECT_FLOAT_EQ(out[1], 20.0f);
}

TEST(RealtimeHandoff, RtcWeightsMatchOpenpiDocstring) {
  // openpi get_prefix_weights(start=2, end=6, total=10), linear: 1 1 4/5 3/5 2/5 1/5 0 0 0 0
  const double linear[10] = {1, 1, 0.8, 0.6, 0.4, 0.2, 0, 0, 0, 0};
  // exp: c (e^c - 1) / (e - 1) for the same c
  const double expw[10] = {1, 1, 0.5705890189580984, 0.2870723952639777, 0.1144922071561075, 0.02577024961716831,
                           0, 0, 0, 0};
  for (int i = 0; i < 10; ++i) {
    EXPECT_NEAR(rtc_weight(i, 2, 6, RtcSchedule::linear), linear[i], 1e-6) << i;
    EXPECT_NEAR(rtc_weight(i, 2, 6, RtcSchedule::exp), expw[i], 1e-6) << i;
  }
  // end before start: start is pushed down to end, so rows >= end ignore the previous chunk
  EXPECT_EQ(rtc_weight(2, 5, 3, RtcSchedule::exp), 1.0f);
  EXPECT_EQ(rtc_weight(3, 5, 3, RtcSchedule::exp), 0.0f);
  // d = 0: nothing frozen, the first row already mixes
  EXPECT_NEAR(rtc_weight(0, 0, 4, RtcSchedule::linear), 0.8, 1e-6);
}

TEST(RealtimeHandoff, RtcBlendFreezesCommittedRows) {
  float prev[10], next[10], out[10];
  for (int i = 0; i < 10; ++i) prev[i] = 10.0f, next[i] = 0.0f;
  rtc_blend(prev, next, 10, 1, 2, 6, RtcSchedule::linear, out);
  const float want[10] = {10, 10, 8, 6, 4, 2, 0, 0, 0, 0};
  for (int i = 0; i < 10; ++i) EXPECT_NEAR(out[i], want[i], 1e-5) << i;
}

namespace {
PlanRecord chunk_record(float* rows, const PlanShape& shape, int64_t obs_tick) {
  PlanRecord r;
  r.shape = shape;
  r.chunk = rows;
  r.obs_tick = obs_tick;
  r.seq = 1;
  return r;
}
}  // namespace

TEST(RealtimeHandoff, HoldUsesNewestChunkWithStride) {
  const PlanShape shape{0, 3, 1};
  HandoffConfig cfg;
  cfg.policy = HandoffPolicy::hold;
  cfg.stride = 2;
  Handoff h(cfg, shape, 1);
  float out = -1;
  EXPECT_FALSE(h.action(0, &out));
  float rows[3] = {0, 1, 2};
  h.on_plan(chunk_record(rows, shape, 0), 0);
  const float want[7] = {0, 0, 1, 1, 2, 2, 2};  // tick 6 is past the chunk: its last row
  for (int t = 0; t < 7; ++t) {
    ASSERT_TRUE(h.action(t, &out));
    EXPECT_EQ(out, want[t]) << t;
  }
  EXPECT_EQ(h.exhausted_ticks(), 1);
}

TEST(RealtimeHandoff, EnsembleVotesOverlappingChunks) {
  const PlanShape shape{0, 3, 1};
  HandoffConfig cfg;
  cfg.policy = HandoffPolicy::ensemble;
  cfg.ensemble_m = float(std::log(2.0));  // weights 1, 1/2 (oldest first)
  Handoff h(cfg, shape, 3);
  float a[3] = {0, 1, 2}, b[3] = {10, 11, 12};
  h.on_plan(chunk_record(a, shape, 0), 0);
  h.on_plan(chunk_record(b, shape, 1), 1);
  float out;
  ASSERT_TRUE(h.action(1, &out));
  EXPECT_NEAR(out, (1 * 1 + 0.5 * 10) / 1.5, 1e-5);  // a row 1 (oldest), b row 0
  ASSERT_TRUE(h.action(2, &out));
  EXPECT_NEAR(out, (2 * 1 + 0.5 * 11) / 1.5, 1e-5);
  ASSERT_TRUE(h.action(3, &out));
  EXPECT_NEAR(out, 12.0, 1e-6);  // only b covers tick 3
  ASSERT_TRUE(h.action(4, &out));
  EXPECT_NEAR(out, 12.0, 1e-6);  // nothing covers tick 4: the newest chunk's last row
  EXPECT_EQ(h.exhausted_ticks(), 1);
  // a ring of 2 keeps only the newest 2 of 3 chunks
  Handoff h2(cfg, shape, 2);
  float c[3] = {100, 101, 102};
  h2.on_plan(chunk_record(a, shape, 0), 0);
  h2.on_plan(chunk_record(b, shape, 1), 1);
  h2.on_plan(chunk_record(c, shape, 2), 2);
  ASSERT_TRUE(h2.action(2, &out));
  EXPECT_NEAR(out, (11 * 1 + 0.5 * 100) / 1.5, 1e-4);  // a dropped: b row 1 (oldest kept), c row 0
}

TEST(RealtimeHandoff, RtcDelayIsMeasuredOnEachPlan) {
  const PlanShape shape{0, 4, 1};
  HandoffConfig cfg;
  cfg.policy = HandoffPolicy::rtc;
  cfg.rtc_schedule = RtcSchedule::linear;
  Handoff h(cfg, shape, 1);
  float p1[4] = {0, 1, 2, 3}, p2[4] = {100, 101, 102, 103};
  h.on_plan(chunk_record(p1, shape, 0), 0);
  EXPECT_EQ(h.last_delay_rows(), 0);
  float out;
  ASSERT_TRUE(h.action(1, &out));
  EXPECT_EQ(out, 1.0f);
  // Planned from tick 1, arrives at tick 3: d = 2 rows committed (ticks 1 and 2 ran p1's rows 1, 2).
  // p1 has rows 1..3 for p2's rows 0..2: end = 3. Weights 1, 1, (3-2)/(3-2+1) = 1/2, 0.
  h.on_plan(chunk_record(p2, shape, 1), 3);
  EXPECT_EQ(h.last_delay_rows(), 2);
  ASSERT_TRUE(h.action(3, &out));  // p2 row 2
  EXPECT_NEAR(out, 0.5 * 3 + 0.5 * 102, 1e-5);
  ASSERT_TRUE(h.action(4, &out));  // p2 row 3: past p1's end, p2 itself
  EXPECT_EQ(out, 103.0f);
  // rtc_horizon caps the blend: end = 2 < d, so p2's rows >= 2 are p2's own
  cfg.rtc_horizon = 2;
  Handoff hc(cfg, shape, 1);
  hc.on_plan(chunk_record(p1, shape, 0), 0);
  hc.on_plan(chunk_record(p2, shape, 1), 3);
  ASSERT_TRUE(hc.action(3, &out));
  EXPECT_EQ(out, 102.0f);
}

TEST(RealtimeHandoff, PolicyNamesParseAndBadOnesAreRefused) {
  EXPECT_EQ(parse_handoff_policy("hold"), HandoffPolicy::hold);
  EXPECT_EQ(parse_handoff_policy("ensemble"), HandoffPolicy::ensemble);
  EXPECT_EQ(parse_handoff_policy("rtc"), HandoffPolicy::rtc);
  try {
    parse_handoff_policy("average");
    FAIL() << "accepted 'average'";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("hold, ensemble or rtc"), std::string::npos) << e.what();
  }
}
