// Token-by-token decoding on the model's device (see decoder.h).
#include "infer/decoder.h"

#include <cstdio>
#include <vector>

#include "core/error.h"
#ifdef STRATA_WITH_CUDA
#include "kernels/cuda/graph.h"
#endif

namespace strata {

#ifdef STRATA_WITH_CUDA
struct Decoder::Graph {
  cuda::StepGraph g;
};
#else
struct Decoder::Graph {};
#endif

Decoder::Decoder(Model& model, int64_t batch, int64_t max_T, DecoderOptions opts)
    : model_(model),
      device_(model.params().device()),
      B_(batch),
      V_(model.vocab()),
      arena_(device_),
      cache_(model.allocate_cache(batch, max_T)),
      ids_dev_(size_t(batch), device_),
      logits_dev_(size_t(batch * model.vocab()), device_) {
  STRATA_CHECK(batch > 0 && max_T > 0, "decoder for batch {} and {} tokens", batch, max_T);
#ifdef STRATA_WITH_CUDA
  use_graphs_ = device_ == Device::cuda && opts.cuda_graphs;
  if (use_graphs_) graph_ = std::make_unique<Graph>();
#else
  (void)opts;
#endif
}

Decoder::~Decoder() = default;

#ifdef STRATA_WITH_CUDA
int64_t Decoder::graph_instantiations() const { return graph_ ? graph_->g.instantiations() : 0; }
int64_t Decoder::graph_updates() const { return graph_ ? graph_->g.updates() : 0; }
#else
int64_t Decoder::graph_instantiations() const { return 0; }
int64_t Decoder::graph_updates() const { return 0; }
#endif

void Decoder::prefill(const int32_t* ids, int64_t T, float* logits) {
  arena_.reset();
  Ctx ctx{device_, &arena_, false};
  model_.prefill(ctx, logits, ids, B_, T, cache_);
}

void Decoder::step(const int32_t* ids, float* logits) {
  if (device_ == Device::cpu) {
    arena_.reset();
    Ctx ctx{device_, &arena_, false};
    model_.step(ctx, logits, ids, cache_);
    ++steps_;
    return;
  }
  // The embedding checks ids itself, but inside a graph recording it cannot stop to: a bad id would
  // be reported only after the step ran (StepGraph::synchronize). For a recorded step they are
  // checked here, on the host, before anything runs.
  if (use_graphs_)
    for (int64_t b = 0; b < B_; ++b)
      STRATA_CHECK(ids[b] >= 0 && ids[b] < V_, "decode: token id {} outside the vocabulary [0, {})", ids[b], V_);
  copy_bytes(ids_dev_.data(), device_, ids, Device::cpu, sizeof(int32_t) * size_t(B_));
  // The first step runs directly: it grows the arena and the scratch pool to their working size,
  // which a recording cannot do.
  const bool graphed = use_graphs_ && steps_ > 0 && step_graph(logits_dev_.data(), ids_dev_.data());
  if (!graphed) step_direct(logits_dev_.data(), ids_dev_.data());
  copy_bytes(logits, Device::cpu, logits_dev_.data(), device_, sizeof(float) * size_t(B_ * V_));
  ++steps_;
}

void Decoder::step_direct(float* logits_dev, const int32_t* ids_dev) {
  arena_.reset();
  Ctx ctx{device_, &arena_, false};
#ifdef STRATA_WITH_CUDA
  if (graph_) {
    // On the graph's stream and scratch pool, so that the pool learns this step's needs.
    graph_->g.run_direct([&] { model_.step_on_device(ctx, logits_dev, ids_dev, cache_); });
    graph_->g.synchronize();
    return;
  }
#endif
  model_.step_on_device(ctx, logits_dev, ids_dev, cache_);
}

bool Decoder::step_graph(float* logits_dev, const int32_t* ids_dev) {
#ifdef STRATA_WITH_CUDA
  // A failed recording may have advanced host-side positions without running anything: keep them.
  std::vector<int64_t> pos;
  for (auto& c : cache_.blocks) pos.push_back(c ? c->pos : 0);
  const int64_t model_pos = cache_.pos;
  arena_.reset();
  Ctx ctx{device_, &arena_, false};
  // No synchronisation here: the graph's stream waits for the caller's (prefill, the cache's
  // initialisation, the staged ids) through an event (StepGraph::run).
  auto restore_positions = [&] {
    for (size_t l = 0; l < cache_.blocks.size(); ++l)
      if (cache_.blocks[l]) cache_.blocks[l]->pos = pos[l];
    cache_.pos = model_pos;
  };
  std::string why;
  bool ran = false;
  try {
    ran = graph_->g.run([&] { model_.step_on_device(ctx, logits_dev, ids_dev, cache_); }, &why);
    if (ran) graph_->g.synchronize();
  } catch (...) {
    restore_positions();  // whether recorded or not, this step's outcome is unknown: undo it
    throw;
  }
  if (ran) {
    ++graph_steps_;
    graph_failures_ = 0;
    return true;
  }
  restore_positions();
  // One failure may be a scratch pool that was too small for this step (it has grown now); a second
  // in a row means the step holds something a graph cannot.
  if (++graph_failures_ >= 2) {
    std::fprintf(stderr, "note: CUDA graphs off for this decode (%s); steps run directly\n", why.c_str());
    use_graphs_ = false;
  }
  return false;
#else
  (void)logits_dev, (void)ids_dev;
  return false;
#endif
}

}  // namespace strata
