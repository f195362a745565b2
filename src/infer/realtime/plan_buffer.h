#pragma once
// The plan record handed from the planner thread to the controller thread, and the buffer that
// hands it over.
//
// A triple buffer rather than a seqlock: both sides are wait-free (the reader never retries, the
// writer never waits for the reader), no record is ever read while it is written (no torn record,
// and no data race for ThreadSanitizer to find, where a seqlock's racy copy needs atomics on every
// word to be defined behaviour), and the planner fills its record in place (no copy of the plan).
// The price is a third record of memory. All storage is allocated by the constructor.
#include <atomic>
#include <cstdint>
#include <span>
#include <vector>

namespace strata::rt {

// The fixed size of a plan: a latent of P floats and/or a chunk of K actions of action_dim floats.
struct PlanShape {
  int latent_dim = 0;  // P (0: the planner emits no latent)
  int chunk_len = 0;   // K (0: the planner emits no action chunk)
  int action_dim = 0;
  int64_t floats() const { return latent_dim + int64_t(chunk_len) * action_dim; }
};

// One plan. Its floats live in the PlanBuffer that holds it; the planner fills them in place.
struct PlanRecord {
  int64_t seq = 0;           // 1, 2, ... in publish order (set by publish); 0: nothing published yet
  int64_t planner_tick = 0;  // the planner tick that computed it
  int64_t obs_tick = 0;      // the control tick of the observation it used: chunk row 0 belongs to it
  int64_t obs_time_ns = 0;   // that observation's own timestamp
  int64_t done_ns = 0;       // when the planner finished (executor clock, ns since the start)
  PlanShape shape;
  float* latent = nullptr;  // [latent_dim]
  float* chunk = nullptr;   // [chunk_len, action_dim]
  const float* action(int j) const { return chunk + int64_t(j) * shape.action_dim; }
  std::span<float> latent_span() const { return {latent, size_t(shape.latent_dim)}; }
  std::span<float> chunk_span() const { return {chunk, size_t(shape.floats() - shape.latent_dim)}; }
};

// One writer thread, one reader thread. Indices: the writer owns back_, the reader owns front_,
// and middle_ holds the third index plus a "fresh" bit the writer sets and the reader clears.
class PlanBuffer {
 public:
  explicit PlanBuffer(PlanShape shape);
  PlanBuffer(const PlanBuffer&) = delete;
  PlanBuffer& operator=(const PlanBuffer&) = delete;

  const PlanShape& shape() const { return shape_; }

  // Writer: fill back() (its floats hold whatever an older plan left), then publish(). After
  // publish(), back() is another record.
  PlanRecord& back() { return slots_[back_].rec; }
  void publish() {
    PlanRecord& r = slots_[back_].rec;
    r.seq = next_seq_++;
    // release: the reader that takes this index sees every write to the record above
    back_ = middle_.exchange(uint8_t(back_ | kFresh), std::memory_order_acq_rel) & kIndex;
  }

  // Reader: take the newest published record if one is newer than front() (true), else keep
  // front() (false). Never waits. front() stays unchanged until the next refresh().
  bool refresh() {
    if (!(middle_.load(std::memory_order_relaxed) & kFresh)) return false;
    front_ = middle_.exchange(front_, std::memory_order_acq_rel) & kIndex;
    return true;
  }
  const PlanRecord& front() const { return slots_[front_].rec; }

 private:
  static constexpr uint8_t kIndex = 3, kFresh = 4;
  struct alignas(64) Slot {  // a cache line apart: the two threads' headers do not share one
    PlanRecord rec;
  };
  PlanShape shape_;
  std::vector<float> storage_;
  Slot slots_[3];
  alignas(64) std::atomic<uint8_t> middle_{2};
  alignas(64) uint8_t back_ = 1;  // writer's
  int64_t next_seq_ = 1;          // writer's
  alignas(64) uint8_t front_ = 0;  // reader's
};

}  // namespace strata::rt
