// Serving pools (see row_pools.h) and the preparation of a RowBatch for the blocks (rows.h).
#include "layers/row_pools.h"

#include <string>

#include "layers/rows.h"

namespace strata {

std::unique_ptr<PagePool> PagePool::make(const PoolSizes& s, int64_t k_width, int64_t v_width, Device d) {
  STRATA_CHECK(s.page_size > 0 && s.num_pages >= 0, "KV pool of {} pages of {} tokens", s.num_pages, s.page_size);
  auto p = std::make_unique<PagePool>();
  p->page_size = s.page_size;
  p->num_pages = s.num_pages;
  p->k_width = k_width;
  p->v_width = v_width;
  const size_t slots = size_t(s.num_pages * s.page_size);
  p->k = DeviceArray<float>::zeros(slots * size_t(k_width), d);
  p->v = DeviceArray<float>::zeros(slots * size_t(v_width), d);
  return p;
}

std::unique_ptr<SlotPool> SlotPool::make(const PoolSizes& s, int64_t conv_size, int64_t ssm_size, Device d) {
  STRATA_CHECK(s.num_state_slots >= 0, "state pool of {} slots", s.num_state_slots);
  auto p = std::make_unique<SlotPool>();
  p->num_slots = s.num_state_slots;
  p->conv_size = conv_size;
  p->ssm_size = ssm_size;
  p->conv = DeviceArray<float>::zeros(size_t(s.num_state_slots * conv_size), d);
  p->ssm = DeviceArray<float>::zeros(size_t(s.num_state_slots * ssm_size), d);
  return p;
}

void SlotPool::copy_slot(int64_t from, int64_t to) {
  STRATA_CHECK(from >= 0 && from < num_slots && to >= 0 && to < num_slots, "state slot copy {} -> {} of {} slots",
               from, to, num_slots);
  if (from == to) return;
  const Device d = device();
  if (conv_size) copy_bytes(conv_of(to), d, conv_of(from), d, sizeof(float) * size_t(conv_size));
  if (ssm_size) copy_bytes(ssm_of(to), d, ssm_of(from), d, sizeof(float) * size_t(ssm_size));
}

void SlotPool::reset_slot(int64_t slot) {
  STRATA_CHECK(slot >= 0 && slot < num_slots, "state slot reset {} of {} slots", slot, num_slots);
  if (conv_size) device_zero(device(), conv_of(slot), sizeof(float) * size_t(conv_size));
  if (ssm_size) device_zero(device(), ssm_of(slot), sizeof(float) * size_t(ssm_size));
}

namespace {
[[noreturn]] void bad_batch(const std::string& what) {
  throw InputError("RowBatch refused: " + what);
}
}  // namespace

RowStep prepare_rows(Ctx& ctx, const RowBatch& rb, const PoolSizes& pools, int64_t vocab, bool uses_pages,
                     bool uses_slots) {
  const int64_t n = rb.rows(), S = rb.num_seqs();
  if (int64_t(rb.pos.size()) != n || int64_t(rb.seq.size()) != n)
    bad_batch(fmt::format("ids, pos and seq must have one entry per row (sizes {}, {}, {})", n, rb.pos.size(),
                          rb.seq.size()));
  if (uses_pages) {
    if (rb.max_pages <= 0 || rb.max_pages > pools.max_pages)
      bad_batch(fmt::format("max_pages {} outside [1, the pools' max_pages {}]", rb.max_pages, pools.max_pages));
    if (int64_t(rb.block_table.size()) != S * rb.max_pages)
      bad_batch(fmt::format("block_table has {} entries, want num_seqs * max_pages = {} * {}", rb.block_table.size(), S,
                            rb.max_pages));
  }
  for (int32_t r : rb.logits_rows)
    if (r < 0 || r >= n) bad_batch(fmt::format("logits row {} outside [0, {} rows)", r, n));
  RowStep rs;
  rs.batch = &rb;
  rs.pools = pools;
  rs.n = n;
  rs.pos = rb.pos;
  rs.kv_slot.assign(size_t(n), -1);
  rs.state_slot.assign(size_t(n), -1);
  std::vector<char> seen(size_t(S), 0);
  const int64_t limit = uses_pages ? rb.max_pages * pools.page_size : INT64_MAX;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t id = rb.ids[size_t(i)], p = rb.pos[size_t(i)], s = rb.seq[size_t(i)];
    if (id < 0 || id >= vocab) bad_batch(fmt::format("row {}: token id {} outside the vocabulary [0, {})", i, id, vocab));
    if (s < 0 || s >= S) bad_batch(fmt::format("row {}: sequence {} outside [0, num_seqs = {})", i, s, S));
    const bool continues = i > 0 && rb.seq[size_t(i - 1)] == s;
    if (!continues) {
      if (seen[size_t(s)])
        bad_batch(fmt::format("row {}: sequence {} already had rows before another sequence's; a sequence's rows "
                              "must be contiguous", i, s));
      seen[size_t(s)] = 1;
    } else if (p != rb.pos[size_t(i - 1)] + 1) {
      bad_batch(fmt::format("row {}: position {} of sequence {} does not follow the previous row's {}", i, p, s,
                            rb.pos[size_t(i - 1)]));
    }
    if (p < 0 || p >= limit)
      bad_batch(fmt::format("row {}: position {} outside [0, max_pages * page_size = {})", i, p, limit));
    if (uses_pages) {
      // Every page this row's query reads (positions 0..p) must be a valid page id.
      const int64_t last = p / pools.page_size;
      for (int64_t j = continues ? last : 0; j <= last; ++j) {
        const int32_t pg = rb.block_table[size_t(s * rb.max_pages + j)];
        if (pg < 0 || pg >= pools.num_pages)
          bad_batch(fmt::format("row {}: sequence {} page {} (positions {}..{}) has id {} outside [0, num_pages = {})",
                                i, s, j, j * pools.page_size, (j + 1) * pools.page_size - 1, pg, pools.num_pages));
      }
      rs.kv_slot[size_t(i)] = int64_t(rb.block_table[size_t(s * rb.max_pages + last)]) * pools.page_size +
                              p % pools.page_size;
    }
    if (uses_slots) {
      if (int64_t(rb.state_slot.size()) != S) bad_batch("state_slot must have one entry per sequence");
      const int32_t slot = rb.state_slot[size_t(s)];
      if (slot < 0 || slot >= pools.num_state_slots)
        bad_batch(fmt::format("sequence {}: state slot {} outside [0, num_state_slots = {})", s, slot,
                              pools.num_state_slots));
      rs.state_slot[size_t(i)] = slot;
    }
  }
  if (uses_slots) {
    for (int64_t a = 0; a < S; ++a)
      for (int64_t b = a + 1; b < S; ++b)
        if (seen[size_t(a)] && seen[size_t(b)] && rb.state_slot[size_t(a)] == rb.state_slot[size_t(b)])
          bad_batch(fmt::format("sequences {} and {} share state slot {}", a, b, rb.state_slot[size_t(a)]));
  }
  if (uses_pages && n > 0) {
    // Row-major copies of each row's table row and its key count, for the paged kernel.
    std::vector<int32_t> pages(size_t(n * rb.max_pages));
    std::vector<int32_t> lens(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const int64_t s = rb.seq[size_t(i)];
      std::copy_n(rb.block_table.begin() + s * rb.max_pages, rb.max_pages, pages.begin() + i * rb.max_pages);
      lens[size_t(i)] = rb.pos[size_t(i)] + 1;
    }
    int32_t* dp = ctx.arena->alloc_int(pages.size());
    int32_t* dl = ctx.arena->alloc_int(lens.size());
    copy_bytes(dp, ctx.device, pages.data(), Device::cpu, sizeof(int32_t) * pages.size());
    copy_bytes(dl, ctx.device, lens.data(), Device::cpu, sizeof(int32_t) * lens.size());
    rs.row_pages = dp;
    rs.row_lens = dl;
    rs.pools.max_pages = rb.max_pages;  // the tables' row stride
  }
  return rs;
}

}  // namespace strata
