#pragma once
// The two kinds of serving pools (Block::allocate_row_cache): pages of token rows for the attention
// blocks, state slots for the Mamba blocks. Both live on the parameters' device.
#include <cstdint>

#include "core/device.h"
#include "core/error.h"
#include "layers/block.h"

namespace strata {

// KV pages: k [num_pages, page_size, k_width], v likewise with v_width (MLA keeps its latent rows
// in k alone: v_width = 0). Token slot s = page * page_size + pos % page_size.
struct PagePool final : BlockRowCache {
  int64_t page_size = 0, num_pages = 0, k_width = 0, v_width = 0;
  DeviceArray<float> k, v;
  Device device() const { return k.device(); }
  int64_t page_bytes() const override { return int64_t(sizeof(float)) * page_size * (k_width + v_width); }
  static std::unique_ptr<PagePool> make(const PoolSizes& s, int64_t k_width, int64_t v_width, Device d);
};

// State slots: conv [num_slots, conv_size] and ssm [num_slots, ssm_size] (one sequence's conv state
// and SSM state each, as the block's step kernels lay out one batch row).
struct SlotPool final : BlockRowCache {
  int64_t num_slots = 0, conv_size = 0, ssm_size = 0;
  DeviceArray<float> conv, ssm;
  Device device() const { return ssm.device(); }
  int64_t slot_bytes() const override { return int64_t(sizeof(float)) * (conv_size + ssm_size); }
  void copy_slot(int64_t from, int64_t to) override;
  void reset_slot(int64_t slot) override;
  float* conv_of(int64_t slot) { return conv.data() + slot * conv_size; }
  float* ssm_of(int64_t slot) { return ssm.data() + slot * ssm_size; }
  static std::unique_ptr<SlotPool> make(const PoolSizes& s, int64_t conv_size, int64_t ssm_size, Device d);
};

// Where each of n rows keeps its conv and SSM state, so that the Mamba blocks' step (the B
// sequences of a cache, contiguous) and step_rows (a slot per row) share one recurrent body:
// each() calls f(first_row, rows, conv_state, ssm_state) once over all rows for a cache, and once
// per row, in row order, for slots (so a sequence's rows advance its state in order).
struct RowStates {
  float* conv = nullptr;  // a cache's [n, ...] states
  float* ssm = nullptr;
  SlotPool* slots = nullptr;  // or each row's slot: slots->*_of(state_slot[row])
  const int32_t* state_slot = nullptr;

  template <class F>
  void each(int64_t n, F&& f) const {
    if (!slots) return f(int64_t(0), n, conv, ssm);
    for (int64_t i = 0; i < n; ++i) f(i, int64_t(1), slots->conv_of(state_slot[i]), slots->ssm_of(state_slot[i]));
  }
};

// The block's pools from the engine's handle, checked: of the expected kind and on the parameters' device.
template <class P>
P* row_pools_as(BlockRowCache* pools, const char* kind, Device params_device) {
  STRATA_CHECK(pools, "{} step_rows needs its pools (allocate_row_cache)", kind);
  auto* p = dynamic_cast<P*>(pools);
  STRATA_CHECK(p, "{} step_rows given pools of another block kind", kind);
  const Device d = p->device();
  STRATA_CHECK(d == params_device, "{} pools on {} used with parameters on {}", kind, device_name(d),
               device_name(params_device));
  return p;
}

}  // namespace strata
