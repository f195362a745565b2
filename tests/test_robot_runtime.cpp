// A trained policy behind the real-time executor's interfaces (train/robot_runtime.h): the planner
// and controller adapters give what the model's forward gives on the normalised episode
// (unnormalised; fp32, 1e-4), and after its first call the controller does not allocate.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include "core/arena.h"
#include "infer/realtime/plan_buffer.h"
#include "testing.h"
#include "train/config_load.h"
#include "load/robot_runtime.h"

namespace {
thread_local bool t_armed = false;
thread_local int64_t t_allocs = 0;
void* counted(size_t n, size_t align) {
  if (t_armed) ++t_allocs;
  void* p = align > alignof(std::max_align_t) ? std::aligned_alloc(align, (n + align - 1) / align * align)
                                              : std::malloc(n ? n : 1);
  if (!p) throw std::bad_alloc();
  return p;
}
}  // namespace

void* operator new(size_t n) { return counted(n, 0); }
void* operator new[](size_t n) { return counted(n, 0); }
void* operator new(size_t n, std::align_val_t a) { return counted(n, size_t(a)); }
void* operator new[](size_t n, std::align_val_t a) { return counted(n, size_t(a)); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t, std::align_val_t) noexcept { std::free(p); }

namespace strata {
namespace {

using testing::expect_close;
using testing::randn;

ArrayStats stats_of(int64_t dim, uint64_t seed) {
  ArrayStats s;
  auto m = randn(size_t(dim), seed), d = testing::uniform(size_t(dim), seed + 1, 0.5f, 2.0f);
  s.mean = m, s.std = d, s.min = m, s.max = m;
  return s;
}

LoadedRobot tiny_robot(const std::string& planner, const std::string& controller) {
  LoadedRobot r;
  r.config = parse_config(fmt::format(R"(model: {{pattern: "-", attention: {{heads: 2}}, mamba: {{head_dim: 8, d_state: 8, chunk: 8}}}}
robot:
  planner: {{pattern: "{}", d_model: 16}}
  controller: {{pattern: "{}", d_model: 16}}
  planner_hz: 10
  control_hz: 30
  chunk: 4
  latent: 6
  planner_delay_ticks: 1
  data: {{path: unused.h5}}
)",
                                      planner, controller),
                          "rt.yaml");
  r.stats.obs["a"] = stats_of(3, 1);
  r.stats.obs["b"] = stats_of(2, 3);
  r.stats.actions = stats_of(2, 5);
  r.policy = std::make_unique<MultiRatePolicy>(r.config.model, r.config.robot, 5, 2, 9);
  return r;
}

void check(const std::string& planner_pattern, const std::string& controller_pattern) {
  LoadedRobot r = tiny_robot(planner_pattern, controller_pattern);
  MultiRatePolicy& p = *r.policy;
  const int64_t T = 24, ratio = p.ratio(), Tp = p.planner_ticks(T), A = 2, O = 5, PW = p.plan_width();
  auto raw = randn(size_t(T * O), 17, 2.0f);
  std::vector<float> norm(raw.size());
  for (int64_t t = 0; t < T; ++t) normalize_obs(r.stats, raw.data() + t * O, norm.data() + t * O);

  // The reference: the model's forwards over the normalised episode (plan of tick j from the
  // observation at control tick j * ratio; the controller at tick i reads plan t0(i)).
  Arena arena(Device::cpu);
  Ctx ctx{Device::cpu, &arena, false};
  std::vector<float> pin(size_t(Tp * O)), plans(size_t(Tp * PW));
  for (int64_t j = 0; j < Tp; ++j) std::copy_n(norm.data() + j * ratio * O, O, pin.data() + j * O);
  p.planner().forward(ctx, p.params(), plans.data(), pin.data(), 1, Tp, nullptr);
  std::vector<float> cin(size_t(T * p.controller_in())), want(size_t(T * A));
  for (int64_t i = 0; i < T; ++i) {
    const int64_t j = p.plan_index(i);
    p.controller_input(cin.data() + i * p.controller_in(), norm.data() + i * O, plans.data() + j * PW, i - j * ratio);
  }
  p.controller().forward(ctx, p.params(), want.data(), cin.data(), 1, T, nullptr);
  for (int64_t i = 0; i < T; ++i) unnormalize_action(r.stats, want.data() + i * A, want.data() + i * A);

  // The adapters, as the executor drives them (one record per planner tick).
  RobotPlanner planner(r, 64);
  RobotController controller(r, 256);
  std::vector<rt::PlanRecord> recs{size_t(Tp)};
  std::vector<std::vector<float>> storage{size_t(Tp), std::vector<float>(size_t(PW))};
  for (int64_t j = 0; j < Tp; ++j) {
    recs[size_t(j)].shape = plan_shape_of(p);
    recs[size_t(j)].latent = storage[size_t(j)].data();
    recs[size_t(j)].chunk = storage[size_t(j)].data() + p.latent();
  }
  std::vector<float> got(size_t(T * A));
  int64_t allocs_after_first = 0, planner_allocs = 0;
  planner.reset();
  for (int64_t j = 0; j < Tp; ++j) {
    t_allocs = 0, t_armed = j > 0;
    planner.plan({j * ratio, 0, {raw.data() + j * ratio * O, size_t(O)}}, recs[size_t(j)]);
    t_armed = false;
    planner_allocs += j > 0 ? t_allocs : 0;
  }
  for (int64_t i = 0; i < T; ++i) {
    const int64_t j = p.plan_index(i);
    rt::PlanView view{&recs[size_t(j)], nullptr, false};
    t_allocs = 0, t_armed = i > 0;
    controller.act({i, 0, {raw.data() + i * O, size_t(O)}}, view, i - j * ratio, {got.data() + i * A, size_t(A)});
    t_armed = false;
    allocs_after_first += i > 0 ? t_allocs : 0;
  }
  expect_close(got, want, 1e-4, 1e-4, "controller adapter vs forward");
  // The plan's latent is the model's; its chunk is unnormalised.
  for (int64_t j = 0; j < Tp; ++j) {
    std::vector<float> w(plans.begin() + j * PW, plans.begin() + (j + 1) * PW);
    for (int64_t k = 0; k < p.chunk(); ++k) unnormalize_action(r.stats, w.data() + p.latent() + k * A, w.data() + p.latent() + k * A);
    expect_close(storage[size_t(j)], w, 1e-4, 1e-4, "plan record vs forward");
  }
  // The controller's thread must not allocate; the planner's may (interfaces.h), e.g. attention's
  // step keeps scratch vectors.
  std::printf("  allocations after the first call: controller %lld, planner %lld\n", (long long)allocs_after_first,
              (long long)planner_allocs);
  EXPECT_EQ(allocs_after_first, 0) << "the controller adapter allocates after its first call";
}

TEST(RobotRuntime, AdaptersMatchForwardAndDoNotAllocate) { check("M-", "M"); }
TEST(RobotRuntime, AttentionPlannerMlpController) { check("*-", "-"); }

}  // namespace
}  // namespace strata
