// The plan hand-off never tears: a writer thread publishes checksummed records while a reader
// thread takes the newest one and checks every float against the record's own header, millions of
// times, with a deliberately slow writer (it yields halfway through each record) and fast reader,
// then the reverse. Also built with -fsanitize=thread (test_realtime_tsan in tests/CMakeLists.txt).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <thread>

#include "infer/realtime/plan_buffer.h"

using namespace strata::rt;

namespace {

#if defined(__SANITIZE_THREAD__)
constexpr int64_t kScale = 20;  // ThreadSanitizer runs 5-15x slower: a twentieth of the reads
#else
constexpr int64_t kScale = 1;
#endif

// Every float of record `tick` is a function of (tick, i), exact in float (< 2^24).
float value(int64_t tick, int64_t i) {
  uint64_t h = uint64_t(tick) * 0x9E3779B97F4A7C15ull ^ uint64_t(i) * 0xC2B2AE3D27D4EB4Full;
  h ^= h >> 29;
  return float(h & 0xFFFFFF);
}

void fill(PlanRecord& r, int64_t tick, bool slow) {
  r.planner_tick = tick;
  r.obs_tick = tick * 3;
  const int64_t n = r.shape.floats();
  for (int64_t i = 0; i < n; ++i) {
    r.latent[i] = value(tick, i);  // latent and chunk are contiguous in one record
    if (slow && i == n / 2) std::this_thread::yield();
  }
}

// Returns the number of torn records seen.
int64_t check(const PlanRecord& r) {
  if (r.seq == 0) return 0;
  int64_t bad = r.obs_tick != r.planner_tick * 3;
  const int64_t n = r.shape.floats();
  for (int64_t i = 0; i < n; ++i) bad += r.latent[i] != value(r.planner_tick, i);
  return bad != 0;
}

struct Result {
  int64_t reads = 0, fresh = 0, torn = 0, backwards = 0, writes = 0;
};

Result stress(int64_t reads, bool slow_writer, int reader_spin) {
  PlanBuffer buf(PlanShape{61, 8, 7});
  std::atomic<bool> done{false};
  Result res;
  std::thread writer([&] {
    int64_t tick = 1;
    while (!done.load(std::memory_order_relaxed)) {
      fill(buf.back(), tick++, slow_writer);
      buf.publish();
    }
    res.writes = tick - 1;
  });
  int64_t last_seq = 0, last_tick = 0;
  for (int64_t k = 0; k < reads; ++k) {
    res.fresh += buf.refresh();
    const PlanRecord& r = buf.front();
    res.torn += check(r);
    res.backwards += r.seq < last_seq || r.planner_tick < last_tick;
    last_seq = r.seq;
    last_tick = r.planner_tick;
    volatile int spin = 0;
    for (int s = 0; s < reader_spin; ++s) spin = spin + 1;  // a slow reader
  }
  res.reads = reads;
  done.store(true);
  writer.join();
  return res;
}

}  // namespace

TEST(RealtimePlanBuffer, SlowWriterFastReaderNeverTears) {
  const Result r = stress(10'000'000 / kScale, /*slow_writer=*/true, /*reader_spin=*/0);
  std::printf("slow writer: %lld reads, %lld fresh records, %lld writes, %lld torn\n", (long long)r.reads,
              (long long)r.fresh, (long long)r.writes, (long long)r.torn);
  EXPECT_EQ(r.torn, 0);
  EXPECT_EQ(r.backwards, 0);
  EXPECT_GT(r.fresh, 0);
}

TEST(RealtimePlanBuffer, FastWriterSlowReaderNeverTears) {
  const Result r = stress(1'000'000 / kScale, /*slow_writer=*/false, /*reader_spin=*/200);
  std::printf("fast writer: %lld reads, %lld fresh records, %lld writes, %lld torn\n", (long long)r.reads,
              (long long)r.fresh, (long long)r.writes, (long long)r.torn);
  EXPECT_EQ(r.torn, 0);
  EXPECT_EQ(r.backwards, 0);
  EXPECT_GT(r.fresh, 0);
}

TEST(RealtimePlanBuffer, ReaderSeesNothingBeforeFirstPublishThenNewest) {
  PlanBuffer buf(PlanShape{4, 0, 0});
  EXPECT_FALSE(buf.refresh());
  EXPECT_EQ(buf.front().seq, 0);
  for (int t = 1; t <= 3; ++t) {
    fill(buf.back(), t, false);
    buf.publish();
  }
  EXPECT_TRUE(buf.refresh());  // three publishes, one refresh: the newest
  EXPECT_EQ(buf.front().seq, 3);
  EXPECT_EQ(buf.front().planner_tick, 3);
  EXPECT_EQ(check(buf.front()), 0);
  EXPECT_FALSE(buf.refresh());
  EXPECT_EQ(buf.front().seq, 3);
}
