#pragma once
// The Engine `strata serve` runs, by name: "batch" (infer/batch_engine.h: continuous batching over
// paged KV and state slots, batch invariant) or "serial" (infer/serial_engine.h, one request at a
// time through Decoder: the baseline). One place to add an engine to the CLI.
#include <memory>
#include <string>
#include <vector>

#include "infer/engine.h"
#include "infer/row_batch.h"
#include "models/model.h"

namespace strata {

struct EngineSettings {
  int64_t max_queue = 64;      // waiting requests; beyond: EngineBusy (HTTP 429)
  int64_t max_context = 4096;  // prompt + max_tokens of one request
  // batch only:
  int64_t max_running = 64;        // sequences decoding at once
  int64_t max_batch_tokens = 512;  // rows per model step (decode rows + prefill chunks)
  int64_t cache_mib = 256;         // KV pages + state slots (MiB, on the model's device)
  int64_t page_size = 16;          // tokens per KV page
  int64_t row_tile = 8;            // rows per linear-layer product (batch invariance; 0: off)
  // State slots for prefix snapshots of Mamba models, beyond one per running sequence; -1: a quarter
  // of max_running (rounded up). Snapshots are cache: one per shared prefix serves every request
  // that starts with it, and without a free slot a snapshot is skipped, never a request.
  int64_t snapshot_slots = -1;
};

// The pool sizes the batch engine gets from settings.cache_mib: state slots for max_running
// sequences plus snapshot_slots prefix snapshots, the rest KV pages (InputError when the budget
// cannot hold one full-length sequence).
PoolSizes batch_pool_sizes(const Model& model, const EngineSettings& settings);

// The names make_engine accepts, for --help and messages.
std::vector<std::string> engine_kinds();
// InputError naming the valid kinds for an unknown one.
std::unique_ptr<Engine> make_engine(const std::string& kind, Model& model, const EngineSettings& settings);

}  // namespace strata
