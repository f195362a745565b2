#pragma once
// A fake ModelRunner for the engine's tests. Its logits depend on exactly what a real model's do:
// the tokens the sequence's KV pages hold for positions <= pos, read back through the block table
// (attention), and what its state slot has consumed (Mamba), so that a scheduling bug (a wrong or
// stale page, a wrong slot, a missing snapshot restore, a row out of place) changes the tokens.
// fake_logits() computes the same function straight from a full sequence: the reference.
// It also checks RowBatch's contract and counts violations (with the first one's description).
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "infer/row_batch.h"
#include "infer/sampler.h"

namespace strata::testing_fake {

enum class FakeKind { attention, mamba, hybrid };

inline uint64_t fmix(uint64_t h, uint64_t x) {
  h ^= x + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  h ^= h >> 31;
  h *= 0x7fb5d329728ea185ull;
  h ^= h >> 27;
  h *= 0x81dadef4bc2dd44dull;
  return h ^ (h >> 33);
}
constexpr uint64_t kStateInit = 0x1234567ull;
inline uint64_t attn_step(uint64_t h, int64_t token, int64_t pos) {
  return fmix(h, uint64_t(token) * 1000003u + uint64_t(pos));
}
inline uint64_t state_step(uint64_t h, int64_t token) { return fmix(h, uint64_t(token) + 17); }

inline void logits_from(FakeKind kind, uint64_t ha, uint64_t hs, int64_t V, float* out) {
  uint64_t h = kind == FakeKind::attention ? ha : kind == FakeKind::mamba ? hs : fmix(ha, hs);
  for (int64_t v = 0; v < V; ++v) out[v] = float(fmix(h, uint64_t(v)) % 1024) / 128.0f;
}

// The reference: logits after tokens[0..n).
inline std::vector<float> fake_logits(FakeKind kind, const std::vector<int32_t>& tokens, int64_t V) {
  uint64_t ha = 0, hs = kStateInit;
  for (size_t q = 0; q < tokens.size(); ++q) {
    ha = attn_step(ha, tokens[q], int64_t(q));
    hs = state_step(hs, tokens[q]);
  }
  std::vector<float> out(static_cast<size_t>(V));
  logits_from(kind, ha, hs, V, out.data());
  return out;
}

// What a request should produce: its own Sampler and Rng(seed) over the reference logits.
inline std::vector<int32_t> reference_tokens(FakeKind kind, int64_t V, const std::vector<int32_t>& prompt,
                                             int64_t max_tokens, SamplerConfig cfg, uint64_t seed,
                                             const std::vector<int32_t>& stop_ids = {}) {
  Sampler s(cfg);
  Rng rng(seed);
  std::vector<int32_t> seq = prompt, out;
  for (int64_t i = 0; i < max_tokens; ++i) {
    std::vector<float> l = fake_logits(kind, seq, V);
    int32_t t = s.sample(l.data(), V, rng);
    out.push_back(t);
    seq.push_back(t);
    bool stop = false;
    for (int32_t x : stop_ids) stop |= x == t;
    if (stop) break;
  }
  return out;
}

class FakeRunner : public ModelRunner {
 public:
  FakeRunner(FakeKind kind, int64_t page_size, int64_t num_pages, int64_t max_pages, int64_t num_slots, int64_t V = 40)
      : kind_(kind), V_(V) {
    pools_.page_size = page_size;
    pools_.num_pages = kind == FakeKind::mamba ? 0 : num_pages;
    pools_.max_pages = kind == FakeKind::mamba ? 0 : max_pages;
    pools_.num_state_slots = kind == FakeKind::attention ? 0 : num_slots;
    kv_tok_.assign(size_t(pools_.num_pages * page_size), -1);
    kv_pos_.assign(size_t(pools_.num_pages * page_size), -1);
    st_h_.assign(size_t(pools_.num_state_slots), 0);
    st_len_.assign(size_t(pools_.num_state_slots), -1);  // -1: never reset
  }
  const PoolSizes& pools() const override { return pools_; }
  int64_t vocab() const override { return V_; }
  bool uses_pages() const override { return kind_ != FakeKind::mamba; }
  bool uses_state_slots() const override { return kind_ != FakeKind::attention; }
  int64_t page_bytes() const override { return uses_pages() ? 1024 : 0; }
  int64_t state_slot_bytes() const override { return uses_state_slots() ? 4096 : 0; }

  void run(const RowBatch& b, float* logits) override {
    if (throw_next_run) {
      throw_next_run = false;
      throw std::runtime_error("fake device fault");
    }
    ++runs;
    max_rows = std::max(max_rows, b.rows());
    const int64_t n = b.rows(), P = pools_.page_size;
    if (int64_t(b.pos.size()) != n || int64_t(b.seq.size()) != n) return violation("row vectors of different sizes");
    if (int64_t(b.block_table.size()) != b.num_seqs() * b.max_pages) return violation("block_table size");
    if (b.max_pages != pools_.max_pages) return violation("max_pages");
    std::vector<int32_t> seen_slots;
    size_t next_logits = 0;
    uint64_t ha = 0;
    for (int64_t i = 0; i < n; ++i) {
      const int32_t s = b.seq[size_t(i)], pos = b.pos[size_t(i)], tok = b.ids[size_t(i)];
      const bool first = i == 0 || b.seq[size_t(i - 1)] != s;
      if (first && s != (i == 0 ? 0 : b.seq[size_t(i - 1)] + 1)) return violation("sequences not contiguous");
      if (!first && pos != b.pos[size_t(i - 1)] + 1) return violation("positions not consecutive");
      if (tok < 0 || tok >= V_) return violation("token id out of range");
      const int32_t slot = b.state_slot[size_t(s)];
      if (uses_state_slots()) {
        if (slot < 0 || slot >= pools_.num_state_slots) return violation("state slot out of range");
        if (first) {
          for (int32_t x : seen_slots)
            if (x == slot) return violation("one state slot for two sequences of a batch");
          seen_slots.push_back(slot);
          if (st_len_[size_t(slot)] != pos)
            return violation("state slot " + std::to_string(slot) + " has consumed " +
                             std::to_string(st_len_[size_t(slot)]) + " tokens, the row is at " + std::to_string(pos));
        }
        st_h_[size_t(slot)] = state_step(st_h_[size_t(slot)], tok);
        ++st_len_[size_t(slot)];
      } else if (slot != -1) {
        return violation("a state slot for a model without Mamba layers");
      }
      if (uses_pages()) {
        const int32_t page = b.block_table[size_t(s * b.max_pages + pos / P)];
        if (page < 0 || page >= pools_.num_pages) return violation("no page for position " + std::to_string(pos));
        kv_tok_[size_t(page * P + pos % P)] = tok;
        kv_pos_[size_t(page * P + pos % P)] = pos;
      }
      if (next_logits < b.logits_rows.size() && b.logits_rows[next_logits] == i) {
        ha = 0;
        if (uses_pages())
          for (int32_t q = 0; q <= pos; ++q) {
            const int32_t page = b.block_table[size_t(s * b.max_pages + q / P)];
            if (page < 0) return violation("no page for read position " + std::to_string(q));
            const size_t at = size_t(page * P + q % P);
            if (kv_pos_[at] != q) ++stale_reads;  // mixed in as read: the tokens will differ
            ha = attn_step(ha, kv_tok_[at], kv_pos_[at]);
          }
        logits_from(kind_, ha, uses_state_slots() ? st_h_[size_t(slot)] : 0, V_, logits + next_logits * V_);
        ++next_logits;
      }
    }
    if (next_logits != b.logits_rows.size()) return violation("logits_rows not increasing or out of range");
    // Block table entries past each sequence's last row are -1.
    if (uses_pages())
      for (int64_t i = 0; i < n; ++i)
        if (i + 1 == n || b.seq[size_t(i + 1)] != b.seq[size_t(i)]) {
          const int64_t s = b.seq[size_t(i)];
          for (int64_t k = (b.pos[size_t(i)] + P) / P; k < b.max_pages; ++k)
            if (b.block_table[size_t(s * b.max_pages + k)] != -1) return violation("a page past the sequence's end");
        }
    // A batch holding a one-row sequence (a decode step) beside a longer chunk (a prefill).
    bool one = false, many = false;
    for (int64_t i = 0, start = 0; i < n; ++i)
      if (i + 1 == n || b.seq[size_t(i + 1)] != b.seq[size_t(i)]) {
        (i == start ? one : many) = true;
        start = i + 1;
      }
    mixed_batches += one && many;
  }
  void copy_state(int32_t from, int32_t to) override {
    if (!uses_state_slots() || from < 0 || to < 0 || from >= pools_.num_state_slots || to >= pools_.num_state_slots ||
        from == to)
      return violation("copy_state(" + std::to_string(from) + ", " + std::to_string(to) + ")");
    st_h_[size_t(to)] = st_h_[size_t(from)];
    st_len_[size_t(to)] = st_len_[size_t(from)];
    ++copies;
  }
  void reset_state(int32_t slot) override {
    if (!uses_state_slots() || slot < 0 || slot >= pools_.num_state_slots) return violation("reset_state");
    st_h_[size_t(slot)] = kStateInit;
    st_len_[size_t(slot)] = 0;
  }

  int64_t violations = 0, stale_reads = 0, runs = 0, max_rows = 0, copies = 0, mixed_batches = 0;
  std::string first_violation;
  bool throw_next_run = false;

 private:
  void violation(const std::string& what) {
    if (violations++ == 0) first_violation = what;
  }
  FakeKind kind_;
  int64_t V_;
  PoolSizes pools_;
  std::vector<int64_t> kv_tok_, kv_pos_;
  std::vector<uint64_t> st_h_;
  std::vector<int64_t> st_len_;
};

}  // namespace strata::testing_fake
