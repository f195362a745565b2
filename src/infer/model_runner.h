#pragma once
// The model side of the serving engine (infer/row_batch.h's ModelRunner) over a Model: owns every
// layer's KV pages and state slots on the model's device and runs RowBatches through
// Model::step_rows. Batch invariant by default: every linear layer runs on fixed row tiles
// (Ctx::row_tile), so a request's logits are bitwise the same whatever else shares its batches.
#include <cstdint>
#include <memory>

#include "infer/row_batch.h"
#include "models/model.h"

namespace strata {

struct RunnerOptions {
  // Rows per linear-layer product (Ctx::row_tile): > 0 batch invariant, 0 one product per layer
  // over all rows (results then depend on the batch). On bench/row_invariance_cost's small hybrid
  // (2-core CPU): 8 is within 10% of untiled from 16 rows up and half its speed for a lone row;
  // 1 (every product a GEMV) costs 7% for a lone row and 20-35% for batches. Invariance holds
  // among the batches of one setting.
  int64_t row_tile = 8;
};

// The model must outlive the runner; its parameters stay where they are (cpu or cuda). Checks the
// pool sizes (InputError: a model with attention needs num_pages, max_pages and page_size > 0, one
// with Mamba layers num_state_slots > 0).
std::unique_ptr<ModelRunner> make_model_runner(Model& model, const PoolSizes& sizes, const RunnerOptions& opts = {});

}  // namespace strata
