// What each stream owns (runtime.h): its cuBLASLt workspace and its device error record, the index
// checks that report into them (index_check.cuh), and ThreadStream (stream.h).
//
// Keyed by stream because that is the unit of concurrency: two decoders on two threads queue on two
// streams at once, and a graph recorded on a stream bakes in the addresses it was given. Host-side
// only: a mutex-guarded map, created on first use, freed by release_stream() or at exit.
#include <mutex>
#include <unordered_map>

#include "core/error.h"
#include "kernels/cuda/index_check.cuh"
#include "kernels/cuda/runtime.h"
#include "kernels/cuda/stream.h"

namespace strata::cuda {
namespace {

struct StreamState {
  void* workspace = nullptr;
  DeviceErrorRecord* errors = nullptr;
};

void free_state(const StreamState& st) {
  free(st.workspace);
  free(st.errors);
}

bool recording(cudaStream_t stream) {
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  CUDA_CHECK(cudaStreamIsCapturing(stream, &st));
  return st != cudaStreamCaptureStatusNone;
}

class Registry {
 public:
  ~Registry() {
    // At exit: the runtime may be unloading, which free() tolerates.
    for (auto& [stream, st] : map_) free_state(st);
  }

  // The stream's state, created on first use. The pointers stay valid until release(stream).
  StreamState get(cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = map_.find(stream);
    if (it != map_.end()) return it->second;
    // Creating means allocating and clearing the record on the stream: a recording would hold the
    // clearing as a graph node instead of doing it now.
    STRATA_CHECK(!recording(stream),
                 "CUDA stream {} is being recorded into a graph before prepare_stream() gave it its workspace "
                 "and error record",
                 static_cast<const void*>(stream));
    StreamState st;
    try {
      st.workspace = alloc(kCublasLtWorkspaceBytes);
      st.errors = static_cast<DeviceErrorRecord*>(alloc(sizeof(DeviceErrorRecord)));
      CUDA_CHECK(cudaMemsetAsync(st.errors, 0xff, sizeof(DeviceErrorRecord), stream));
    } catch (...) {
      free_state(st);
      throw;
    }
    map_.emplace(stream, st);
    return st;
  }

  // The stream's state if it has one (errors == nullptr otherwise); creates nothing.
  StreamState find(cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = map_.find(stream);
    return it == map_.end() ? StreamState{} : it->second;
  }

  void release(cudaStream_t stream) {
    StreamState st;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = map_.find(stream);
      if (it == map_.end()) return;
      st = it->second;
      map_.erase(it);
    }
    free_state(st);
  }

 private:
  std::mutex mu_;
  std::unordered_map<cudaStream_t, StreamState> map_;
};

Registry& registry() {
  static Registry r;
  return r;
}

const char* recorded_op(BadIndex kind) { return kind == BadIndex::expert ? "moe_permute_indices" : "embedding"; }

}  // namespace

void* cublaslt_workspace(cudaStream_t stream) { return registry().get(stream).workspace; }

void prepare_stream(cudaStream_t stream) { registry().get(stream); }

// Called from destructors: never throws. The stream's work must be done before its workspace and
// record go (a failed wait means a broken context, reported by the next checked call).
void release_stream(cudaStream_t stream) {
  if (cudaStreamSynchronize(stream) != cudaSuccess) cudaGetLastError();
  registry().release(stream);
}

void synchronize_checked(cudaStream_t stream) {
  const StreamState st = registry().find(stream);
  DeviceErrorRecord h{};
  // Queued before the wait: one synchronisation for both (a pageable destination makes the copy
  // itself wait for the stream).
  if (st.errors) CUDA_CHECK(cudaMemcpyAsync(&h, st.errors, sizeof(h), cudaMemcpyDeviceToHost, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  if (!st.errors) return;
  // Every kind that went wrong goes into the one message (a step may have both a bad token id and,
  // downstream, a bad expert index); the record is then cleared so it is reported once.
  std::string what;
  for (int k = 0; k < kBadIndexKinds; ++k) {
    if (h.slot[k].first == ~0ull) continue;
    const BadIndex kind = static_cast<BadIndex>(k);
    what += (what.empty() ? "" : "; ") + bad_index_message(kind, recorded_op(kind), h.slot[k]);
  }
  if (what.empty()) return;
  CUDA_CHECK(cudaMemsetAsync(st.errors, 0xff, sizeof(DeviceErrorRecord), stream));
  STRATA_CHECK(false, "{} (found on the device by a recorded CUDA graph step)", what);
}

std::string bad_index_message(BadIndex kind, const char* op, const BadIndexSlot& slot) {
  const int64_t where = int64_t(slot.first >> 32);
  const int32_t value = int32_t(uint32_t(slot.first & 0xffffffffull));
  if (kind == BadIndex::expert)
    return fmt::format("{}: expert index {} at assignment {} outside [0, {})", op, value, where, slot.bound);
  return fmt::format("{}: token id {} at position {} outside the vocabulary [0, {})", op, value, where, slot.bound);
}

IndexCheck::IndexCheck(BadIndex kind, const char* op, cudaStream_t stream)
    : kind_(kind),
      op_(op),
      stream_(stream),
      recording_(recording(stream)),
      scratch_(recording_ ? 0 : sizeof(BadIndexSlot), stream) {
  if (recording_) {
    slot_ = &registry().get(stream).errors->slot[int(kind)];
    return;
  }
  slot_ = static_cast<BadIndexSlot*>(scratch_.data());
  CUDA_CHECK(cudaMemsetAsync(slot_, 0xff, sizeof(BadIndexSlot), stream));
}

void IndexCheck::finish() {
  if (recording_) return;
  BadIndexSlot h{};
  CUDA_CHECK(cudaMemcpyAsync(&h, slot_, sizeof(h), cudaMemcpyDeviceToHost, stream_));
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  STRATA_CHECK(h.first == ~0ull, "{}", bad_index_message(kind_, op_, h));
}

ThreadStream::ThreadStream() : prev_(current_stream()) {
  CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  set_current_stream(stream_);
}

ThreadStream::~ThreadStream() {
  set_current_stream(prev_);
  release_stream(stream_);  // waits for it first
  cudaStreamDestroy(stream_);
}

}  // namespace strata::cuda
