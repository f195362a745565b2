// CUDA graph recording and replay for the decode step (see graph.h).
#include "kernels/cuda/graph.h"

#include "kernels/cuda/runtime.h"

namespace strata::cuda {

struct StepGraph::Impl {
  cudaStream_t stream = nullptr;
  cudaGraphExec_t exec = nullptr;
  ScratchPool pool;
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
  CUDA_CHECK(cudaStreamCreateWithFlags(&impl_->stream, cudaStreamNonBlocking));
}

StepGraph::~StepGraph() {
  if (impl_->exec) cudaGraphExecDestroy(impl_->exec);
  if (impl_->stream) {
    cudaStreamSynchronize(impl_->stream);
    cudaStreamDestroy(impl_->stream);
  }
}

void StepGraph::run_direct(const std::function<void()>& work) {
  // The pool's memory is reused from its start: the previous step's work must be done with it.
  CUDA_CHECK(cudaStreamSynchronize(impl_->stream));
  impl_->pool.grow();
  impl_->pool.reset();
  OnStream on(impl_->stream, &impl_->pool);
  work();
}

bool StepGraph::run(const std::function<void()>& work, std::string* why) {
  Impl& m = *impl_;
  CUDA_CHECK(cudaStreamSynchronize(m.stream));  // as in run_direct: the pool is reused from its start
  m.pool.grow();
  m.pool.reset();
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
  return true;
}

void StepGraph::synchronize() { CUDA_CHECK(cudaStreamSynchronize(impl_->stream)); }

}  // namespace strata::cuda
