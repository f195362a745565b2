#pragma once
// CUDA graphs for the per-token decode step, as a plain C++ header (no CUDA types).
//
// A decode step of a small model is a few hundred short kernels; at batch 1 launching them costs
// more than running them. StepGraph records the work of one step into a graph and launches it as a
// whole. Every step is recorded again and the instantiated graph is updated in place
// (cudaGraphExecUpdate, microseconds) rather than instantiated anew (milliseconds): per-step
// scalars such as the decode position are kernel arguments that change, and only when the shape of
// the work changes (e.g. attention starts splitting the keys) is the graph re-instantiated. This is
// the scheme llama.cpp's CUDA backend uses. Scratch memory comes from a pool whose addresses repeat
// (runtime.h ScratchPool), so the recorded pointers stay valid when the graph is replayed.
//
// Streams: the step runs on a private non-blocking stream, which has its own cuBLASLt workspace and
// device error record (runtime.h), so steps of two StepGraphs (two decoders, two host threads) run
// at once without sharing either. The step is ordered against the caller's current stream by
// events, not by host synchronisation: it waits for everything queued there before run() / run_direct()
// (the cache's initialisation, a prefill, the staged ids), and work the caller queues there
// afterwards waits for the step.
#include <functional>
#include <memory>
#include <string>

namespace strata::cuda {

class StepGraph {
 public:
  StepGraph();
  ~StepGraph();
  StepGraph(const StepGraph&) = delete;
  StepGraph& operator=(const StepGraph&) = delete;

  // Runs `work` (which must only queue device work on the current stream: no synchronisation, no
  // host <-> device copy) by recording it on a private stream and launching the graph there. Returns
  // false, with `why` set and nothing launched, when the recording failed (the work tried something
  // a graph cannot hold, or needed more scratch than the pool had); the caller must then undo any
  // host-side state `work` changed and run it directly. Any other exception from `work` is
  // rethrown (after the capture has been ended). Any scratch memory `work` took beyond the pool is
  // noted, and the pool grows first. Waits for the previous run on the stream before reusing the
  // pool; the launch itself is asynchronous (synchronize() before reading the results).
  bool run(const std::function<void()>& work, std::string* why);
  // The same work without a graph, on the same stream and scratch pool (warm-up, fallback).
  void run_direct(const std::function<void()>& work);
  // Waits for the step. Throws strata::Error when a recorded kernel reported a bad index (a token id
  // outside the vocabulary, an expert index outside the experts): a recording cannot stop to check,
  // so the check surfaces here (kernels/cuda/index_check.cuh).
  void synchronize();
  int instantiations() const { return instantiations_; }
  int updates() const { return updates_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int instantiations_ = 0, updates_ = 0;
};

}  // namespace strata::cuda
