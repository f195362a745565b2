#pragma once
// What the engine's scheduler asks of the model in one iteration, and the model side that runs it
// (infer/model_runner.h). The batch is flat, vLLM-v1 style: every row is one token of one sequence,
// decode tokens and chunks of prefill alike, so one code path (the blocks' step_rows) serves both and
// a row's result does not depend on which other rows share the batch.
//
// Memory is owned by the runner and handed out by the scheduler:
// - KV pages: `num_pages` pages of `page_size` token slots per attention layer (one page id covers
//   the same slots in every attention layer). A sequence's token at position p lives in page
//   block_table[seq * max_pages + p / page_size], slot p % page_size.
// - State slots: `num_state_slots` slots of every Mamba layer's conv and SSM state; a sequence
//   uses state_slot[seq]. Extra slots hold prefix-cache snapshots (copy_state).
#include <cstdint>
#include <vector>

#include "layers/rows.h"

namespace strata {

// PoolSizes and RowBatch (fields documented there) are defined in layers/rows.h, where the blocks'
// step_rows can see them.

// The model side of the engine: owns the KV pages and state slots (on the model's device) and runs
// RowBatches through Model::step_rows. The scheduler (and tests, with a fake) use this interface.
class ModelRunner {
 public:
  virtual ~ModelRunner() = default;
  virtual const PoolSizes& pools() const = 0;
  virtual int64_t vocab() const = 0;
  virtual bool uses_pages() const = 0;        // has attention layers
  virtual bool uses_state_slots() const = 0;  // has Mamba layers
  virtual int64_t page_bytes() const = 0;     // one page over all attention layers
  virtual int64_t state_slot_bytes() const = 0;  // one slot over all Mamba layers
  // Runs the rows; logits[i, V] for i-th entry of batch.logits_rows (host memory).
  virtual void run(const RowBatch& batch, float* logits) = 0;
  // Every Mamba layer's conv and SSM state of slot `to` becomes that of `from` (prefix snapshots).
  virtual void copy_state(int32_t from, int32_t to) = 0;
  // Slot `slot` becomes the empty state of a new sequence.
  virtual void reset_state(int32_t slot) = 0;
};

}  // namespace strata
