#pragma once
// Shared internals of the emulator's runtime half (memory.cpp, stream.cpp, graph.cpp, runtime.cpp,
// cublaslt.cpp): the stream model, the capture hooks and the allocation registry. Not seen by the
// code under test, which sees only CUDA's names (runtime_api.h).
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <strata_emulator/memory_check.h>
#include <strata_emulator/runtime_api.h>

namespace strata_emu::rt {

// ---- errors (runtime.cpp) ----
// Records a failing result as the thread's last error (CUDA does so for every failing call) and
// returns it, so API functions end with `return ret(err)`.
cudaError_t ret(cudaError_t err);

// ---- allocation registry (memory.cpp) ----
// Host memory standing in for device memory: 256-byte aligned, filled with a NaN pattern (device
// memory is uninitialised), followed by a guard zone checked when the allocation is released.
void* device_alloc(size_t bytes);
// Releases a live allocation by its base address; false when `p` is not one.
bool device_release(void* p);
// Whether `p` is the base address of a live allocation.
bool is_allocation_base(const void* p);
// Refills [p, p + bytes) with the uninitialised pattern (a graph's allocation node at each replay).
void fill_uninitialised(void* p, size_t bytes);
size_t bytes_in_use();
size_t memory_limit();

// ---- streams (stream.cpp) ----
// What a unit of queued work is, for graph nodes and diagnostics.
enum class NodeKind : uint8_t { kernel, memcpy, memset, mem_alloc, mem_free, empty };
const char* kind_name(NodeKind k);

struct Stream;
// "Item `seq` of `stream` has run" (seq 0: nothing to wait for).
struct Dep {
  std::shared_ptr<Stream> stream;
  uint64_t seq = 0;
};

struct Item {
  uint64_t seq = 0;
  const char* what = "";
  std::function<void()> work;
  std::vector<Dep> deps;  // items of other streams that must have run first
};

struct Capture;

struct Stream {
  bool legacy = false;
  unsigned flags = 0;
  std::mutex mu;  // queue, enqueued
  std::deque<Item> queue;
  uint64_t enqueued = 0;                // seq of the last item queued
  std::atomic<uint64_t> completed{0};  // seq of the last item run (items run in order)
  std::mutex run_mu;                    // held while one of this stream's items runs
  std::shared_ptr<Capture> capture;     // under capture_mutex(): the capture this stream records into
  bool blocking() const { return !legacy && !(flags & cudaStreamNonBlocking); }
};

// The stream a handle names (nullptr and cudaStreamLegacy: the legacy default stream); nullptr for
// a handle that is not a live stream.
std::shared_ptr<Stream> stream_of(cudaStream_t h);
std::vector<std::shared_ptr<Stream>> live_streams();

// Queues `work` on `s` (which must not be capturing) with CUDA's implicit legacy-stream ordering and
// `extra` dependencies; returns the item's Dep.
Dep push(const std::shared_ptr<Stream>& s, const char* what, std::function<void()> work, std::vector<Dep> extra = {});
// Runs queued work, on this host thread, until every target has run; several streams' queues are
// interleaved in a seeded random order that respects each FIFO and every dependency.
void run_until(std::vector<Dep> targets);
// Runs everything queued on every stream (what cudaDeviceSynchronize waits for).
void drain_all();
// A Dep for everything queued on `s` so far.
Dep tail_of(const std::shared_ptr<Stream>& s);
bool done(const Dep& d);

// One stream operation (kernel, copy, memset, ...): recorded as a graph node while `h` is capturing,
// refused when the legacy stream would depend on a capturing blocking stream, else queued. `out`
// receives the queued item (seq 0 when recorded instead).
cudaError_t stream_op(cudaStream_t h, NodeKind kind, const char* what, std::function<void()> work, Dep* out = nullptr);

// ---- capture (graph.cpp) ----
std::mutex& capture_mutex();
// Under capture_mutex(): whether `s` is in capture mode, and its status.
cudaStreamCaptureStatus capture_status_locked(const Stream& s);
// Under capture_mutex(): appends a node to s's capture (s must be capturing); an invalidated capture
// refuses it.
cudaError_t record_node_locked(Stream& s, NodeKind kind, const char* what, std::function<void()> work,
                               void* alloc = nullptr, size_t alloc_bytes = 0);
// Under capture_mutex(): invalidates s's capture (a prohibited call involved it).
void invalidate_locked(Stream& s);
// A use of the legacy stream: refused (cudaErrorStreamCaptureImplicit) and the capture invalidated
// while any blocking stream is capturing.
cudaError_t check_legacy_use();
// A "potentially unsafe" call (cudaMalloc, cudaFree, synchronous cudaMemcpy / cudaMemset): refused
// (cudaErrorStreamCaptureUnsupported) under CUDA's capture-mode rules, invalidating the capture that
// forbids it.
cudaError_t check_unsafe_call();
// A device-wide synchronisation: refused and every capture invalidated while any stream captures.
cudaError_t check_device_sync();
// cudaMallocAsync / cudaFreeAsync on a capturing stream: allocation and free nodes.
cudaError_t capture_malloc_locked(Stream& s, void** p, size_t bytes);
cudaError_t capture_free_locked(Stream& s, void* p);
// Under capture_mutex(), for events: the capture `s` records into; whether a capture is still
// ongoing; invalidating it; a stream joining it (cudaStreamWaitEvent on an event recorded in it).
std::shared_ptr<Capture> capture_of_locked(const Stream& s);
bool capture_ongoing_locked(const Capture& c);
void invalidate_capture_locked(Capture& c);
cudaError_t join_capture_locked(Stream& s, const std::shared_ptr<Stream>& sp, const std::shared_ptr<Capture>& c);

// ---- tests ----
// Restarts the scheduler's random interleavings from `seed` (default: env STRATA_EMU_SEED).
void set_seed(uint64_t seed);

}  // namespace strata_emu::rt
