#pragma once
// Index checks made by kernels (a token id outside the vocabulary, an expert index outside the
// experts), reported without stopping the device.
//
// The CPU twins throw on a bad index. On the device the kernel notes the first bad one in a slot
// and the host reads the slot back, which costs a synchronisation: fine for a direct call, which
// then throws as the CPU twin does, but impossible inside a CUDA graph recording (a decode step), and
// a step that synchronised per layer would not be recordable at all. So IndexCheck picks the slot by
// the stream's state:
//   not recording: a scratch slot, read back by finish() (one synchronisation), which throws;
//   recording:     the stream's device error record (runtime.h), nothing read back; the replayed
//                  kernel fills it and synchronize_checked(stream) throws the same message at the
//                  step's end, where the host waits for the step anyway (StepGraph::synchronize).
#include <cstdint>
#include <string>

#include "kernels/cuda/runtime.h"

namespace strata::cuda {

enum class BadIndex : int32_t { expert = 0, token = 1 };
constexpr int kBadIndexKinds = 2;

// The first bad index of one kind: (position << 32) | uint32(value), minimised over the reports so
// the lowest position wins whatever the thread order; ~0 when none. `bound` is the range's end.
struct BadIndexSlot {
  unsigned long long first;
  long long bound;
};
// A stream's device error record: one slot per kind, all ~0 bytes when clear.
struct DeviceErrorRecord {
  BadIndexSlot slot[kBadIndexKinds];
};

__device__ __forceinline__ void report_bad_index(BadIndexSlot* s, int64_t where, int32_t value, int64_t bound) {
  // Positions past 2^32 - 2 share the last one (the packed value must stay below "none").
  const unsigned long long w = where < 0xfffffffeLL ? (unsigned long long)where : 0xfffffffeull;
  s->bound = (long long)bound;
  atomicMin(&s->first, (w << 32) | (unsigned long long)(uint32_t)value);
}

// "<op>: expert index 9 at assignment 3 outside [0, 4)" / "<op>: token id 70 at position 2 outside
// the vocabulary [0, 64)"
std::string bad_index_message(BadIndex kind, const char* op, const BadIndexSlot& slot);

class IndexCheck {
 public:
  // `op` names the checking op in the message (a recorded check names it when the record is read).
  IndexCheck(BadIndex kind, const char* op, cudaStream_t stream);
  IndexCheck(const IndexCheck&) = delete;
  IndexCheck& operator=(const IndexCheck&) = delete;
  BadIndexSlot* slot() const { return slot_; }  // for the kernel's report_bad_index
  // Not recording: waits for the stream and throws strata::Error on a reported bad index.
  // Recording: nothing (the stream's record is checked by synchronize_checked).
  void finish();

 private:
  BadIndex kind_;
  const char* op_;
  cudaStream_t stream_;
  bool recording_;
  DeviceBuffer scratch_;  // the slot when not recording
  BadIndexSlot* slot_ = nullptr;
};

}  // namespace strata::cuda
