// CUDA graph recording and replay for the decode step (see graph.h).
#include "kernels/cuda/graph.h"

#include "kernels/cuda/runtime.h"

namespace strata::cuda {

struct StepGraph::Impl {
  cudaStream_t stream = nullptr;
  cudaGraphExec_t exec = nullptr;
  ScratchPool pool;
  // The caller's stream -> ours before a step, ours -> the caller's after it (see follow / lead).
  cudaEvent_t before = nullptr, after = nullptr;

  // The step waits for what the caller queued on its stream so far: the cache's initialisation, a
  // prefill, the staged ids. Queued on our stream ahead of the step (not recorded: a recording
  // cannot wait on an event from outside it), so a graph launched after it waits too.
  void follow(cudaStream_t caller) {
    CUDA_CHECK(cudaEventRecord(before, caller));
    CUDA_CHECK(cudaStreamWaitEvent(stream, before, 0));
  }
  // Whatever the caller queues next on its stream (reading the logits, another prefill into the
  // cache) waits for the step.
  void lead(cudaStream_t caller) {
    CUDA_CHECK(cudaEventRecord(after, stream));
    CUDA_CHECK(cudaStreamWaitEvent(caller, after, 0));
  }
};

namespace {
// Makes `s` the current stream and `pool` the scratch pool of this thread for one scope.
class OnStream {
 public:
  OnStream(cudaStream_t s, ScratchPool* pool) : prev_(current_stream()) {
    set_current_stream(s);
    set_scratch_pool(pool);
  }
  ~OnStream() {
    set_scratch_pool(nullptr);
    set_current_stream(prev_);
  }

 private:
  cudaStream_t prev_;
};
}  // namespace

StepGraph::StepGraph() : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  CUDA_CHECK(cudaStreamCreateWithFlags(&m.stream, cudaStreamNonBlocking));
  CUDA_CHECK(cudaEventCreateWithFlags(&m.before, cudaEventDisableTiming));
  CUDA_CHECK(cudaEventCreateWithFlags(&m.after, cudaEventDisableTiming));
  // Its cuBLASLt workspace and device error record exist before the first recording (which could
  // not allocate them); the recorded GEMMs use this stream's workspace, no other stream's.
  prepare_stream(m.stream);
}

StepGraph::~StepGraph() {
  Impl& m = *impl_;
  if (m.exec) cudaGraphExecDestroy(m.exec);
  if (m.stream) {
    release_stream(m.stream);  // waits for the stream first
    cudaStreamDestroy(m.stream);
  }
  if (m.before) cudaEventDestroy(m.before);
  if (m.after) cudaEventDestroy(m.after);
}

void StepGraph::run_direct(const std::function<void()>& work) {
  Impl& m = *impl_;
  // The pool's memory is reused from its start: the previous step's work must be done with it.
  synchronize_checked(m.stream);
  m.pool.grow(m.stream);
  m.pool.reset();
  const cudaStream_t caller = current_stream();
  m.follow(caller);
  {
    OnStream on(m.stream, &m.pool);
    work();
  }
  m.lead(caller);
}

bool StepGraph::run(const std::function<void()>& work, std::string* why) {
  Impl& m = *impl_;
  synchronize_checked(m.stream);  // as in run_direct: the pool is reused from its start
  m.pool.grow(m.stream);
  m.pool.reset();
  const cudaStream_t caller = current_stream();
  m.follow(caller);  // before the recording starts, so the launch below is ordered after it
  cudaGraph_t graph = nullptr;
  {
    OnStream on(m.stream, &m.pool);
    // Thread-local mode: other host threads may keep using CUDA (e.g. allocating) meanwhile.
    CUDA_CHECK(cudaStreamBeginCapture(m.stream, cudaStreamCaptureModeThreadLocal));
    try {
      work();
    } catch (...) {
      // The stream must leave capture mode whatever was thrown. Then: a recording the CUDA runtime
      // invalidated (the work made a call a graph cannot hold) or a full scratch pool means "run it
      // directly"; anything else (a shape check, a full cache) is the work's own error: rethrown.
      const cudaError_t end = cudaStreamEndCapture(m.stream, &graph);
      if (graph) cudaGraphDestroy(graph);
      cudaGetLastError();  // capture errors are not sticky; clear the last one
      const bool unrecordable = end != cudaSuccess || m.pool.exhausted();
      if (!unrecordable) throw;
      if (why) {
        try {
          throw;
        } catch (const std::exception& e) {
          *why = e.what();
        } catch (...) {
          *why = "unknown exception";
        }
      }
      return false;
    }
    const cudaError_t err = cudaStreamEndCapture(m.stream, &graph);
    if (err != cudaSuccess || !graph) {
      cudaGetLastError();
      if (why) *why = std::string("recording the step: ") + cudaGetErrorString(err);
      return false;
    }
  }
  bool updated = false;
  if (m.exec) {
    cudaGraphExecUpdateResultInfo info{};
    updated = cudaGraphExecUpdate(m.exec, graph, &info) == cudaSuccess;
    if (!updated) {
      cudaGetLastError();
      cudaGraphExecDestroy(m.exec);
      m.exec = nullptr;
    }
  }
  if (!updated) {
    const cudaError_t err = cudaGraphInstantiate(&m.exec, graph, 0);
    if (err != cudaSuccess) {
      cudaGraphDestroy(graph);
      m.exec = nullptr;
      cudaGetLastError();
      if (why) *why = std::string("instantiating the step graph: ") + cudaGetErrorString(err);
      return false;
    }
    ++instantiations_;
  } else {
    ++updates_;
  }
  cudaGraphDestroy(graph);
  CUDA_CHECK(cudaGraphLaunch(m.exec, m.stream));
  m.lead(caller);
  return true;
}

void StepGraph::synchronize() { synchronize_checked(impl_->stream); }

}  // namespace strata::cuda
