// ModelRunner over a Model (see model_runner.h). Besides the pools it keeps, per state slot, how
// many positions that slot's state has consumed, so that a batch whose rows do not continue where
// their state ends (a slot not reset for a new sequence, a skipped chunk) is refused instead of
// silently producing wrong tokens.
#include "infer/model_runner.h"

#include <string>
#include <vector>

#include "core/arena.h"
#include "core/error.h"

namespace strata {
namespace {

class Runner final : public ModelRunner {
 public:
  Runner(Model& model, const PoolSizes& sizes, const RunnerOptions& opts)
      : model_(model), arena_(model.params().device()) {
    const std::string pattern = model.layer_pattern();
    const bool pages = pattern.find('*') != std::string::npos, slots = pattern.find('M') != std::string::npos;
    if (sizes.num_pages < 0 || sizes.max_pages < 0 || sizes.num_state_slots < 0)
      throw InputError(fmt::format("serving pools: num_pages ({}), max_pages ({}) and num_state_slots ({}) must be >= 0",
                                   sizes.num_pages, sizes.max_pages, sizes.num_state_slots));
    if (sizes.page_size <= 0) throw InputError(fmt::format("serving pools: page_size must be positive (got {})", sizes.page_size));
    if (pages && (sizes.num_pages <= 0 || sizes.max_pages <= 0))
      throw InputError(fmt::format("serving pools: the model has attention layers (pattern {}), so num_pages ({}) and "
                                   "max_pages ({}) must be positive",
                                   pattern, sizes.num_pages, sizes.max_pages));
    if (slots && sizes.num_state_slots <= 0)
      throw InputError(fmt::format("serving pools: the model has Mamba layers (pattern {}), so num_state_slots must "
                                   "be positive (got {})",
                                   pattern, sizes.num_state_slots));
    if (opts.row_tile < 0) throw InputError(fmt::format("row_tile must be >= 0 (got {})", opts.row_tile));
    // Kept as given (pools() reports them): a model without attention allocates no pages, one without
    // Mamba layers no state slots, and the scheduler may still read max_pages as the context limit.
    sizes_ = sizes;
    pools_ = model.allocate_row_cache(sizes_);
    slot_pos_.assign(size_t(sizes_.num_state_slots), 0);
    ctx_.device = model.params().device();
    ctx_.arena = &arena_;
    ctx_.params = &model.params();
    ctx_.row_tile = opts.row_tile;
  }

  const PoolSizes& pools() const override { return sizes_; }
  int64_t vocab() const override { return model_.vocab(); }
  bool uses_pages() const override { return pools_.uses_pages; }
  bool uses_state_slots() const override { return pools_.uses_state_slots; }
  int64_t page_bytes() const override { return pools_.page_bytes(); }
  int64_t state_slot_bytes() const override { return pools_.slot_bytes(); }

  void run(const RowBatch& batch, float* logits) override {
    check_state_positions(batch);
    arena_.reset();
    model_.step_rows(ctx_, logits, batch, pools_);
    if (!pools_.uses_state_slots) return;
    for (int64_t i = 0; i < batch.rows(); ++i)
      slot_pos_[size_t(batch.state_slot[size_t(batch.seq[size_t(i)])])] = int64_t(batch.pos[size_t(i)]) + 1;
  }

  void copy_state(int32_t from, int32_t to) override {
    check_slot(from, "copy_state from");
    check_slot(to, "copy_state to");
    for (auto& p : pools_.blocks)
      if (p) p->copy_slot(from, to);
    slot_pos_[size_t(to)] = slot_pos_[size_t(from)];
  }

  void reset_state(int32_t slot) override {
    check_slot(slot, "reset_state");
    for (auto& p : pools_.blocks)
      if (p) p->reset_slot(slot);
    slot_pos_[size_t(slot)] = 0;
  }

 private:
  void check_slot(int32_t slot, const char* what) const {
    if (slot < 0 || slot >= sizes_.num_state_slots)
      throw InputError(fmt::format("{}: state slot {} outside [0, num_state_slots = {})", what, slot,
                                   sizes_.num_state_slots));
  }

  // Each sequence's first row must sit at the position its state slot has reached (the rest of the
  // batch's shape is checked by Model::step_rows).
  void check_state_positions(const RowBatch& b) const {
    if (!pools_.uses_state_slots) return;
    const int64_t n = b.rows();
    if (int64_t(b.seq.size()) != n || int64_t(b.pos.size()) != n) return;  // refused with its reason by step_rows
    std::vector<char> seen(size_t(b.num_seqs()), 0);
    for (int64_t i = 0; i < n; ++i) {
      const int32_t s = b.seq[size_t(i)];
      if (s < 0 || s >= b.num_seqs()) return;
      if (seen[size_t(s)]) continue;
      seen[size_t(s)] = 1;
      const int32_t slot = b.state_slot[size_t(s)];
      if (slot < 0 || slot >= sizes_.num_state_slots) return;
      if (slot_pos_[size_t(slot)] != b.pos[size_t(i)])
        throw InputError(fmt::format("RowBatch refused: row {}: sequence {} starts at position {}, but its state slot "
                                     "{} has consumed {} positions (reset_state a slot for a new sequence, "
                                     "copy_state a snapshot for a prefix hit)",
                                     i, s, b.pos[size_t(i)], slot, slot_pos_[size_t(slot)]));
    }
  }

  Model& model_;
  PoolSizes sizes_;
  ModelRowCache pools_;
  Arena arena_;
  Ctx ctx_;
  std::vector<int64_t> slot_pos_;  // positions each state slot has consumed
};

}  // namespace

std::unique_ptr<ModelRunner> make_model_runner(Model& model, const PoolSizes& sizes, const RunnerOptions& opts) {
  return std::make_unique<Runner>(model, sizes, opts);
}

}  // namespace strata
