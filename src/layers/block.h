#pragma once
// A block is a mixer or feed-forward sublayer (attention, Mamba, Mamba-2, MLP, MoE): the model wraps
// each as norm -> block -> residual. Every block has the three entry points of ARCHITECTURE.md §1:
//   forward  x[B,T,D] -> y[B,T,D]  (training / prefill; saves what backward needs in ctx.arena)
//   backward dy -> dx              (dx assigned, parameter grads accumulated)
//   step     x[B,D] -> y[B,D]      (one token, advancing the block's cache)
// and, for the serving engine, step_rows x[n,D] -> y[n,D] over a flat RowBatch (layers/rows.h): one
// token of some sequence per row, KV in pages and recurrent state in slots of pools the block
// allocates once (allocate_row_cache) and the engine's scheduler hands out.
// and parity ties them: T steps give what forward gives, and forward with a cache (prefill) leaves
// the cache exactly as T steps would.
#include <cstdint>
#include <memory>
#include <string>

#include "core/arena.h"
#include "core/device.h"
#include "core/dtype.h"
#include "core/params.h"
#include "layers/block_config.h"
#include "layers/rows.h"

namespace strata {

// train.precision: fp32 everywhere, or bf16 mixed precision (bf16 GEMM operands, fp32 master
// weights, accumulation, activations kept for backward, gradients and optimizer state).
enum class Precision : uint8_t { fp32, bf16 };

// Told during backward that every parameter gradient at a flat offset >= `offset` (ParamStore's
// layout) is final for this step: the trunk calls it after each layer's backward. Data parallelism
// (train/distributed.h) starts reducing those gradients across processes while backward goes on.
struct GradsFinal {
  virtual ~GradsFinal() = default;
  virtual void from(int64_t offset) = 0;
};

class QuantizedLinears;

struct Ctx {
  Device device = Device::cpu;
  Arena* arena = nullptr;  // activations saved by forward for backward; reset by the trainer each step
  bool training = false;   // save activations (forward must be followed by backward)
  // Factor on the loss being differentiated (1/grad_accum). Upstream gradients already carry it;
  // a block that adds its own loss term (MoE aux loss) must scale that term's gradient by it.
  float loss_scale = 1.0f;
  // Precision of the linear layers' products (layers/linear.h). bf16: operands rounded to bf16
  // (weights read from params' bf16 shadow, which must then be enabled and current), fp32
  // accumulation and outputs; everything else (norms, scans, softmax, grads, optimizer) stays fp32.
  Precision precision = Precision::fp32;
  const ParamStore* params = nullptr;  // the bf16 shadow's owner; needed only when precision == bf16
  // Null: nobody listens. Set only where everything declared after the trunk (norm_f, the head) has
  // its gradient before Trunk::backward runs, as in Model::backward.
  GradsFinal* grads_final = nullptr;
  // > 0: each linear product (layers/linear.h) computes a row the same way whatever rows share it
  // (GEMM libraries pick kernels and orders by M): the serving engine's batch invariance. On the CPU
  // by row-invariant kernels (the value only switches them on); on CUDA / in bf16 by products of
  // exactly row_tile rows, the last tile zero-padded. 0: one product over all rows (training, generate).
  int64_t row_tile = 0;
  // Weight-only int8 / int4 weights (layers/quant_linear.h), set by a quantised Model at inference:
  // linear_forward reads the weights it holds from it. Null: every product is fp32 as above.
  const QuantizedLinears* quant = nullptr;
};

// Per-sequence-batch decode state of one block (KV cache, conv state, SSM state). Opaque to the
// engine, which only holds a list of them. It lives where the block's parameters live (allocate_cache
// places it on the ParamStore's device), so a decode step never moves state between host and device.
struct BlockCache {
  virtual ~BlockCache() = default;
  int64_t pos = 0;  // tokens consumed so far
  virtual int64_t bytes() const = 0;
};

// The serving engine's pools of one block (KV pages for attention, conv + SSM state slots for
// Mamba), sized by PoolSizes and living on the parameters' device. Opaque to the engine.
struct BlockRowCache {
  virtual ~BlockRowCache() = default;
  virtual int64_t page_bytes() const { return 0; }  // one KV page of this block
  virtual int64_t slot_bytes() const { return 0; }  // one state slot of this block
  // State slot `to` becomes a copy of slot `from` / the empty state (no-ops for pages).
  virtual void copy_slot(int64_t /*from*/, int64_t /*to*/) {}
  virtual void reset_slot(int64_t /*slot*/) {}
};

class Block {
 public:
  virtual ~Block() = default;
  virtual std::string kind() const = 0;  // "attention", "mamba", "mamba2", "mlp", "moe"

  // x[B, T, D] -> y[B, T, D] (y is the block output, without the residual). When `cache` is given
  // it must be empty (pos == 0) and is filled as T steps would fill it (prefill).
  virtual void forward(Ctx& ctx, float* y, const float* x, int64_t B, int64_t T, BlockCache* cache) = 0;
  // dy[B, T, D] -> dx[B, T, D] (assigned); parameter grads accumulated. Needs the preceding
  // forward with ctx.training set; refuses to run otherwise.
  virtual void backward(Ctx& ctx, float* dx, const float* dy, int64_t B, int64_t T) = 0;
  // Cache for B sequences of up to max_T tokens; nullptr for stateless blocks (MLP, MoE).
  virtual std::unique_ptr<BlockCache> allocate_cache(int64_t B, int64_t max_T) const = 0;
  // x[B, D] -> y[B, D], one token per sequence at position cache->pos, which it then advances.
  virtual void step(Ctx& ctx, float* y, const float* x, int64_t B, BlockCache* cache) = 0;

  // Pools for the serving engine; nullptr for stateless blocks (MLP, MoE).
  virtual std::unique_ptr<BlockRowCache> allocate_row_cache(const PoolSizes& sizes) const = 0;
  // x[n, D] -> y[n, D] over the rows of rs (rs.n rows, layers/rows.h): row i is the token at position
  // rs.pos[i] of its sequence, whose KV lives in the pages of rs.row_pages and whose state in slot
  // rs.state_slot[i] of `pools`; a sequence's rows run in order, each seeing the ones before it.
  // With the same kernels as step; a row's result depends only on its sequence (and, bitwise, on
  // nothing else when ctx.row_tile > 0). Temporaries from ctx.arena.
  virtual void step_rows(Ctx& ctx, float* y, const float* x, const RowStep& rs, BlockRowCache* pools) = 0;

  // Auxiliary loss of the last forward (MoE load balancing), already scaled by its coefficient;
  // its gradient is added by backward.
  virtual double aux_loss() const { return 0.0; }
  // Forward multiply-adds x2 per token at context length T (for inspect / MFU).
  virtual double flops_per_token(int64_t T) const = 0;
  // Cache bytes that grow with each token (KV) and that are fixed per sequence (SSM/conv state).
  virtual int64_t cache_bytes_per_token() const { return 0; }
  virtual int64_t cache_bytes_fixed() const { return 0; }
};

// Constructs the block for one pattern character ('M', '*', '-', 'E'), declaring its parameters in
// `store` under `prefix` (e.g. "layers.3.mixer").
std::unique_ptr<Block> make_block(char kind, const ModelConfig& cfg, ParamStore& store, const std::string& prefix);

}  // namespace strata
