#pragma once
// The serving engine's flat batch as the blocks read it. RowBatch and PoolSizes are the contract
// between the scheduler and the model (documented in infer/row_batch.h, which includes this file);
// they live down here because the blocks' step_rows and Model::step_rows take them, and a layer may
// not include infer/. RowStep is what Model::step_rows derives from a RowBatch once, for every
// block: the per-row KV slots and state slots (host), and the per-row page tables the paged
// attention kernel reads (on the device where the work runs).
#include <cstdint>
#include <vector>

#include "core/device.h"

namespace strata {

struct Ctx;

struct PoolSizes {
  int64_t page_size = 16;       // tokens per KV page
  int64_t num_pages = 0;        // per attention layer (0 when the model has none)
  int64_t max_pages = 0;        // pages one sequence may hold: its context limit is max_pages * page_size
  int64_t num_state_slots = 0;  // per Mamba layer (0 when the model has none)
};

struct RowBatch {
  // Per row (n rows). Rows of one sequence are contiguous and in increasing position, and a
  // sequence's rows continue exactly where its cache ends (its KV holds positions < pos of its first
  // row; its state has consumed those positions).
  std::vector<int32_t> ids;  // token id
  std::vector<int32_t> pos;  // position in its sequence
  std::vector<int32_t> seq;  // index of its sequence in this batch (0 .. num_seqs-1)
  // Per sequence of this batch (num_seqs of them).
  std::vector<int32_t> block_table;  // [num_seqs * max_pages] page ids (entries past the sequence's length: -1)
  std::vector<int32_t> state_slot;   // [num_seqs] state slot (-1 when the model has no Mamba layer)
  int64_t max_pages = 0;
  // Rows whose next-token logits are wanted (the last row of a sequence's chunk, when it is the end
  // of the prompt or a decode token), in the order the logits are written.
  std::vector<int32_t> logits_rows;

  int64_t rows() const { return int64_t(ids.size()); }
  int64_t num_seqs() const { return int64_t(state_slot.size()); }
};

// One RowBatch prepared for the blocks (prepare_rows). Host vectors index the pools from the host
// (copies, the recurrent step kernels' state pointers); the device arrays feed the paged kernel.
struct RowStep {
  const RowBatch* batch = nullptr;
  PoolSizes pools;
  int64_t n = 0;                    // rows
  std::vector<int32_t> pos;         // [n] position of each row (host)
  std::vector<int64_t> kv_slot;     // [n] page * page_size + pos % page_size: where its key/value go (-1 without pages)
  std::vector<int32_t> state_slot;  // [n] its sequence's state slot (-1 without state slots)
  const int32_t* row_pages = nullptr;  // [n, max_pages] on ctx.device: row i's sequence's block table row
  const int32_t* row_lens = nullptr;   // [n] on ctx.device: pos + 1, the keys row i's query sees
};

// Checks `rb` against the pools (InputError naming the row, sequence and bound on anything out of
// place: ids outside [0, vocab), sequences out of range or not contiguous, positions that do not
// increase by one within a sequence or pass the context limit, page ids outside [0, num_pages) or
// missing for a position, state slots outside [0, num_state_slots)) and prepares its RowStep, the
// device tables in ctx.arena. uses_pages / uses_slots: the model has attention / Mamba layers.
RowStep prepare_rows(Ctx& ctx, const RowBatch& rb, const PoolSizes& pools, int64_t vocab, bool uses_pages,
                     bool uses_slots);

}  // namespace strata
