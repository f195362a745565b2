// What the serving engine's batch invariance costs: rows/s of Model::step_rows on a small hybrid
// (d_model 256, pattern M*-M*E: Mamba-2, GQA attention, MLP, MoE) with Ctx::row_tile = 8 (the
// ModelRunner default; on the CPU any value > 0 selects the row-invariant kernels of
// kernels/cpu/gemm_rows.h and quant_linear_forward's GEMV path, so the tile size itself changes
// nothing here) against row_tile = 0 (one oneDNN product per layer over all rows, as training and
// generate run), for batches of n rows:
//   decode/n:  n sequences, one row each, at position 64 (their KV pages hold 64 earlier tokens);
//   prefill/n: one sequence's chunk of n rows from position 0.
// rows/s is the counter "rows_per_second". Threads: OMP_NUM_THREADS.
//   bench/row_invariance_cost --benchmark_filter=decode
#include <benchmark/benchmark.h>

#include <memory>
#include <vector>

#include "core/rng.h"
#include "models/model.h"

using namespace strata;

namespace {

constexpr int64_t kPage = 16, kCtx = 64;

Model& hybrid() {
  static Model m = [] {
    ModelConfig c;
    c.d_model = 256;
    c.pattern = "M*-M*E";
    c.attention.heads = 8;
    c.attention.kv_heads = 2;
    c.mamba.version = 2;
    c.mamba.head_dim = 32;
    c.moe.experts = 8;
    c.moe.top_k = 2;
    return Model(c, 1);
  }();
  return m;
}

// n rows: decode (n sequences at position kCtx) or prefill (one sequence, positions 0..n-1).
RowBatch batch(int64_t n, bool decode, int64_t max_pages) {
  RowBatch b;
  b.max_pages = max_pages;
  Rng r(1);
  const int64_t seqs = decode ? n : 1;
  for (int64_t i = 0; i < n; ++i) {
    b.ids.push_back(int32_t(r.below(256)));
    b.pos.push_back(int32_t(decode ? kCtx : i));
    b.seq.push_back(int32_t(decode ? i : 0));
    b.logits_rows.push_back(int32_t(i));
  }
  for (int64_t s = 0; s < seqs; ++s) {
    for (int64_t j = 0; j < max_pages; ++j) b.block_table.push_back(int32_t(s * max_pages + j));
    b.state_slot.push_back(int32_t(s));
  }
  if (!decode) b.logits_rows = {int32_t(n - 1)};
  return b;
}

void run(benchmark::State& st, bool decode) {
  const int64_t n = st.range(0), tile = st.range(1);
  Model& m = hybrid();
  const int64_t max_pages = (std::max(n, kCtx + 1) + kPage - 1) / kPage;
  PoolSizes ps{kPage, (decode ? n : 1) * max_pages, max_pages, decode ? n : 1};
  ModelRowCache pools = m.allocate_row_cache(ps);
  Arena arena;
  Ctx ctx{Device::cpu, &arena, false};
  ctx.row_tile = tile;
  const RowBatch b = batch(n, decode, max_pages);
  std::vector<float> logits(b.logits_rows.size() * size_t(m.vocab()));
  // The same rows again and again: each run rewrites the same KV slots and advances the states,
  // which costs what a fresh decode step costs.
  for (auto _ : st) {
    arena.reset();
    m.step_rows(ctx, logits.data(), b, pools);
    benchmark::DoNotOptimize(logits.data());
  }
  st.counters["rows_per_second"] = benchmark::Counter(double(n) * double(st.iterations()), benchmark::Counter::kIsRate);
}

void BM_decode(benchmark::State& st) { run(st, true); }
void BM_prefill(benchmark::State& st) { run(st, false); }

void sizes(benchmark::internal::Benchmark* b) {
  for (int64_t n : {1, 16, 64, 256})
    for (int64_t tile : {0, 8}) b->Args({n, tile});
  b->ArgNames({"n", "row_tile"})->Unit(benchmark::kMillisecond)->MinTime(0.3);
}

}  // namespace

BENCHMARK(BM_decode)->Apply(sizes);
BENCHMARK(BM_prefill)->Apply(sizes);
BENCHMARK_MAIN();
