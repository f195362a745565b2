#pragma once
// A private CUDA stream for one host thread, as a plain C++ header (no CUDA types).
//
// Ops queue on the thread's current stream (core/device_cuda.h), the legacy default stream unless
// set; the legacy stream is shared by every thread and waits for every other blocking stream. Work
// that should run alongside other threads' work (a decoder per thread) gives its thread a stream of
// its own for a scope: a non-blocking stream, made current, with its own cuBLASLt workspace
// (runtime.h), released and restored at the end of the scope.
struct CUstream_st;

namespace strata::cuda {

class ThreadStream {
 public:
  ThreadStream();   // creates the stream and makes it this thread's current stream
  ~ThreadStream();  // waits for it, frees its resources, restores the previous current stream
  ThreadStream(const ThreadStream&) = delete;
  ThreadStream& operator=(const ThreadStream&) = delete;
  CUstream_st* get() const { return stream_; }

 private:
  CUstream_st* stream_ = nullptr;
  CUstream_st* prev_ = nullptr;
};

}  // namespace strata::cuda
