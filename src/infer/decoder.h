#pragma once
// Token-by-token decoding of B sequences on the model's device: the cache, the activation arena,
// and, on CUDA, the per-step graph (kernels/cuda/graph.h). generate() and score(decode) run on it.
//
// On cpu a step is Model::step. On cuda the ids are staged once per step into a fixed device
// buffer (checked on the host first when graphs are on: inside a recording the embedding reports a
// bad id only once the step has run), and the step (Model::step_on_device) is recorded into a CUDA
// graph and replayed, every block kind included (MoE routing checks its expert indices on the
// device: kernels/cuda/index_check.cuh). The first step runs directly (the arena and scratch pool
// grow to their working size), and a step the graph cannot hold runs directly too; after two such
// steps in a row graphs are off for this decoder, with a one-line notice on stderr.
//
// Streams: prefill and the cache's initialisation run on the caller's current stream (per host
// thread: kernels/cuda/stream.h gives a thread its own); the steps run on the graph's private
// stream, ordered after the caller's earlier work and before its later work by events
// (kernels/cuda/graph.h). Decoders on different threads decode concurrently: each step graph has its
// own stream, scratch pool and cuBLASLt workspace. One Decoder is used by one thread at a time.
#include <cstdint>
#include <memory>
#include <string>

#include "core/arena.h"
#include "core/device.h"
#include "models/model.h"

namespace strata {

struct DecoderOptions {
  bool cuda_graphs = true;  // record and replay decode steps on cuda (ignored on cpu)
};

class Decoder {
 public:
  Decoder(Model& model, int64_t batch, int64_t max_T, DecoderOptions opts = {});
  ~Decoder();
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  // ids[B, T] (host) -> logits[B, V] (host) of each sequence's last position; fills the empty cache.
  void prefill(const int32_t* ids, int64_t T, float* logits);
  // ids[B] (host) -> logits[B, V] (host); advances the cache by one position.
  void step(const int32_t* ids, float* logits);

  Device device() const { return device_; }
  const ModelCache& cache() const { return cache_; }
  int64_t pos() const { return cache_.pos; }
  // Steps run through a CUDA graph so far (0 on cpu, or when graphs are off).
  int64_t graph_steps() const { return graph_steps_; }
  // Of those, the steps whose graph was instantiated anew, and those that updated the previous one
  // in place (cudaGraphExecUpdate); they add up to graph_steps().
  int64_t graph_instantiations() const;
  int64_t graph_updates() const;
  bool graphs_on() const { return use_graphs_; }

 private:
  void step_direct(float* logits_dev, const int32_t* ids_dev);
  bool step_graph(float* logits_dev, const int32_t* ids_dev);

  Model& model_;
  Device device_;
  int64_t B_, V_;
  Arena arena_;
  ModelCache cache_;
  DeviceArray<int32_t> ids_dev_;  // fixed buffers: the graph records their addresses
  DeviceArray<float> logits_dev_;
  bool use_graphs_ = false;
  int64_t steps_ = 0, graph_steps_ = 0;
  int graph_failures_ = 0;  // consecutive recordings that failed
  struct Graph;
  std::unique_ptr<Graph> graph_;
};

}  // namespace strata
