// The controller loop allocates nothing. This binary replaces the global operator new/delete
// with versions that count, on the calling thread only, while a thread-local flag is armed; the
// executor's controller_loop_begin / controller_loop_end hooks arm it around the whole loop
// (sleeping, reading the observation, taking the plan, the hand-off, the controller, recording).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "realtime_testing.h"

namespace {
thread_local bool t_armed = false;
thread_local int64_t t_allocs = 0;
std::atomic<int64_t> g_loop_allocs{-1};

void* counted(size_t n, size_t align) {
  if (t_armed) ++t_allocs;
  void* p = align > alignof(std::max_align_t) ? std::aligned_alloc(align, (n + align - 1) / align * align)
                                              : std::malloc(n ? n : 1);
  if (!p) throw std::bad_alloc();
  return p;
}

void loop_begin() {
  t_allocs = 0;
  t_armed = true;
}
void loop_end() {
  t_armed = false;
  g_loop_allocs.store(t_allocs);
}
}  // namespace

void* operator new(size_t n) { return counted(n, 0); }
void* operator new[](size_t n) { return counted(n, 0); }
void* operator new(size_t n, std::align_val_t a) { return counted(n, size_t(a)); }
void* operator new[](size_t n, std::align_val_t a) { return counted(n, size_t(a)); }
void* operator new(size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted(n, 0);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted(n, 0);
  } catch (...) {
    return nullptr;
  }
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t, std::align_val_t) noexcept { std::free(p); }

using namespace strata::rt;
using namespace strata::rt::testing;

TEST(RealtimeAlloc, CounterSeesAnAllocationWhenArmed) {
  loop_begin();
  auto* v = new std::vector<int>(100);
  loop_end();
  delete v;
  EXPECT_GE(g_loop_allocs.load(), 1) << "the counting operator new is not in effect";
}

TEST(RealtimeAlloc, ControllerLoopAllocatesNothing) {
  for (HandoffPolicy policy : {HandoffPolicy::hold, HandoffPolicy::ensemble, HandoffPolicy::rtc}) {
    ExecutorConfig cfg;
    cfg.control_hz = 4000;
    cfg.planner_hz = 40;
    cfg.seconds = 1.0;  // 4000 control ticks, 40 plans
    cfg.action_dim = 4;
    cfg.lock_memory = false;  // not what this test is about; keeps the process as it is
    cfg.print_table = false;
    cfg.handoff.policy = policy;
    cfg.handoff.stride = 20;  // chunks of 16 x 20 ticks overlap: the ensemble votes 3 at a time
    cfg.controller_loop_begin = loop_begin;
    cfg.controller_loop_end = loop_end;
    const RecordedStream stream = make_stream(1000, 39, 250.0);
    BurnPlanner planner(2.0);
    TrivialController controller;
    g_loop_allocs.store(-1);
    Executor ex(cfg, PlanShape{8, 16, 4});
    const LoopSummary s = ex.run(planner, controller, stream);
    EXPECT_EQ(s.ticks, 4000);
    EXPECT_EQ(controller.calls, 4000);
    EXPECT_GE(s.plans_used, 2);
    EXPECT_EQ(g_loop_allocs.load(), 0) << "allocations in the controller loop, policy " << handoff_policy_name(policy);
  }
}
