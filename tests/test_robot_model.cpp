// The robot policy's model side (models/multirate.h): the controller's and the planner's step equal
// their forward over a whole episode (fp32, 1e-4), and a finite-difference check of the gradient
// through planner -> latent -> controller.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/arena.h"
#include "models/multirate.h"
#include "testing.h"

namespace strata {
namespace {

using testing::expect_close;
using testing::randn;

RobotConfig tiny_robot(const std::string& planner, const std::string& controller, int chunk, int latent, int delay) {
  RobotConfig r;
  r.planner = {planner, 16, 1};
  r.controller = {controller, 16, 1};
  r.planner_hz = 10;
  r.control_hz = 40;  // ratio 4
  r.chunk = chunk;
  r.latent = latent;
  r.planner_delay_ticks = delay;
  r.loss = "mse";
  r.data.path = "unused.hdf5";
  return r;
}

ModelConfig tiny_blocks() {
  ModelConfig m;
  m.attention.heads = 2;
  m.mamba.head_dim = 8;
  m.mamba.d_state = 8;
  m.mamba.chunk = 8;
  return m;
}

RobotBatch random_batch(const MultiRatePolicy& p, int64_t B, int64_t W, uint64_t seed) {
  RobotBatch b;
  b.B = B, b.W = W;
  const int64_t Tp = p.planner_ticks(W);
  b.obs = randn(size_t(B * W * p.obs_dim()), seed);
  b.actions = randn(size_t(B * W * p.action_dim()), seed + 1);
  b.mask.assign(size_t(B * W), 1.0f);
  b.mask.back() = 0.0f;  // padding is ignored
  b.chunk = randn(size_t(B * Tp * p.chunk() * p.action_dim()), seed + 2);
  b.chunk_mask.assign(size_t(B * Tp * p.chunk()), 1.0f);
  return b;
}

// One episode, planner and controller run step by step as at run time, against their forwards over
// the whole episode.
void check_step_parity(const std::string& planner_pattern, const std::string& controller_pattern) {
  const int64_t obs_dim = 5, A = 3, T = 37;
  MultiRatePolicy pol(tiny_blocks(), tiny_robot(planner_pattern, controller_pattern, 4, 6, 2), obs_dim, A, 7);
  Arena arena(Device::cpu);
  Ctx ctx{Device::cpu, &arena, false};
  auto obs = randn(size_t(T * obs_dim), 11);
  const int64_t Tp = pol.planner_ticks(T), PW = pol.plan_width(), CI = pol.controller_in();

  std::vector<float> pin(size_t(Tp * obs_dim)), plans_fwd(size_t(Tp * PW)), plans_step(size_t(Tp * PW));
  for (int64_t j = 0; j < Tp; ++j)
    std::copy_n(obs.data() + j * pol.ratio() * obs_dim, obs_dim, pin.data() + j * obs_dim);
  pol.planner().forward(ctx, pol.params(), plans_fwd.data(), pin.data(), 1, Tp, nullptr);
  ModelCache pc = pol.planner().allocate_cache(1, Tp);
  for (int64_t j = 0; j < Tp; ++j) {
    arena.reset();
    pol.plan(ctx, pc, pin.data() + j * obs_dim, plans_step.data() + j * PW);
  }
  expect_close(plans_step, plans_fwd, 1e-4, 1e-4, "planner step vs forward");

  std::vector<float> cin(size_t(T * CI)), act_fwd(size_t(T * A)), act_step(size_t(T * A));
  for (int64_t i = 0; i < T; ++i) {
    const int64_t j = pol.plan_index(i);
    pol.controller_input(cin.data() + i * CI, obs.data() + i * obs_dim, plans_fwd.data() + j * PW, i - j * pol.ratio());
  }
  arena.reset();
  pol.controller().forward(ctx, pol.params(), act_fwd.data(), cin.data(), 1, T, nullptr);
  ModelCache cc = pol.controller().allocate_cache(1, T);
  for (int64_t i = 0; i < T; ++i) {
    arena.reset();
    const int64_t j = pol.plan_index(i);
    pol.act(ctx, cc, obs.data() + i * obs_dim, plans_step.data() + j * PW, i - j * pol.ratio(), act_step.data() + i * A);
  }
  expect_close(act_step, act_fwd, 1e-4, 1e-4, "controller step vs forward");
}

TEST(RobotModel, ControllerStepEqualsForwardMamba) { check_step_parity("M-", "M-"); }
TEST(RobotModel, ControllerStepEqualsForwardAttentionAndMlp) { check_step_parity("*-", "-"); }

TEST(RobotModel, PlanAlignmentFollowsDelay) {
  MultiRatePolicy pol(tiny_blocks(), tiny_robot("-", "-", 0, 4, 3), 2, 1, 1);
  // ratio 4, delay 3: t0(i) = floor((i - 3) / 4) * 4, clamped at 0.
  const int64_t want[] = {0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2};
  for (int64_t i = 0; i < 12; ++i) EXPECT_EQ(pol.plan_index(i), want[i]) << "tick " << i;
}

// Finite differences of the training loss against backward's gradients. chunk = 0: the planner
// is trained only through the latent the controller reads, so its gradients are exactly the path
// planner -> latent -> controller -> loss.
TEST(RobotModel, GradientThroughPlannerLatentController) {
  MultiRatePolicy pol(tiny_blocks(), tiny_robot("M-", "M", 0, 4, 2), 3, 2, 5);
  Arena arena(Device::cpu);
  Ctx ctx{Device::cpu, &arena, true};
  RobotBatch b = random_batch(pol, 2, 11, 21);
  ParamStore& ps = pol.params();
  ps.zero_grad();
  arena.reset();
  pol.forward_loss(ctx, b);
  pol.backward(ctx);
  std::vector<float> grad(ps.flat_grad(), ps.flat_grad() + ps.numel());
  auto loss = [&] {
    arena.reset();
    return double(pol.eval_loss(ctx, b));
  };
  Rng pick(3);
  const float h = 1e-2f;
  double planner_max = 0;
  for (auto& in : ps.infos()) {
    std::vector<double> got, want;
    for (int s = 0; s < 4; ++s) {
      const int64_t i = in.offset + int64_t(pick.below(uint64_t(in.numel)));
      float* v = ps.flat() + i;
      const float keep = *v;
      *v = keep + h;
      double up = loss();
      *v = keep - h;
      double down = loss();
      *v = keep;
      got.push_back(grad[size_t(i)]);
      want.push_back((up - down) / (2.0 * h));
      if (in.name.rfind("planner.", 0) == 0) planner_max = std::max(planner_max, std::abs(want.back()));
    }
    expect_close(got, want, 3e-4, 5e-2, in.name);
  }
  EXPECT_GT(planner_max, 1e-3) << "the planner gets no gradient through the latent";
}

TEST(RobotModel, PlannerChunkLossAndAccumulationScale) {
  MultiRatePolicy pol(tiny_blocks(), tiny_robot("-", "-", 3, 2, 0), 3, 2, 9);
  Arena arena(Device::cpu);
  Ctx ctx{Device::cpu, &arena, true};
  RobotBatch b = random_batch(pol, 2, 9, 31);
  ParamStore& ps = pol.params();
  ps.zero_grad();
  float l = pol.forward_loss(ctx, b);
  EXPECT_NEAR(l, pol.last_controller_loss() + pol.last_chunk_loss(), 1e-6);
  EXPECT_GT(pol.last_chunk_loss(), 0.0f);
  pol.backward(ctx, 1.0f);
  std::vector<float> g1(ps.flat_grad(), ps.flat_grad() + ps.numel());
  ps.zero_grad();
  arena.reset();
  pol.forward_loss(ctx, b);
  pol.backward(ctx, 0.5f);
  for (int64_t i = 0; i < ps.numel(); ++i) ASSERT_NEAR(ps.flat_grad()[i], 0.5f * g1[size_t(i)], 1e-6f + 1e-5f * std::abs(g1[size_t(i)]));
}

}  // namespace
}  // namespace strata
