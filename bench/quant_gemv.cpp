// Decode-shaped products (M = 1..4 rows of x against a whole weight), and a prefill-shaped one
// (M = 64), with fp32, int8 and int4 weights:
//   fp32       strata::cpu::linear_forward (oneDNN sgemm, the fp32 path of every Linear layer)
//   int8/int4  strata::cpu::quant_linear_forward (fp32 activations), once per GEMV ISA path this CPU has
//   act8_*     strata::cpu::quant_linear_forward_act8 (int8 activations), once per ISA path (VNNI, AVX2)
// Counters: weight GB/s (bytes of the weight format read per call) and calls/s. At M = 1 all three
// are bound by reading the weights, so the ratio of calls/s is what quantisation buys at decode.
// Run single-threaded for stable numbers: OMP_NUM_THREADS=1 ./build/bench/quant_gemv.
#include <benchmark/benchmark.h>

#include <vector>

#include "core/rng.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/quant_gemm.h"

namespace {

using namespace strata;

std::vector<float> randn(size_t n, uint64_t seed) {
  Rng r(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = r.normal() * 0.05f;
  return v;
}

void BM_fp32(benchmark::State& s) {
  const int64_t M = s.range(0), N = s.range(1), K = s.range(2);
  const auto w = randn(size_t(N * K), 1), x = randn(size_t(M * K), 2);
  std::vector<float> out(size_t(M * N));
  for (auto _ : s) {
    cpu::linear_forward(out.data(), x.data(), w.data(), nullptr, M, K, N);
    benchmark::DoNotOptimize(out.data());
  }
  s.counters["weight_GB/s"] = benchmark::Counter(double(N * K * 4) * double(s.iterations()) / 1e9, benchmark::Counter::kIsRate);
}

// Times product(out, x, w, M) for [M, K] x a [N, K] weight quantised to `bits` (the ISA set by the caller).
template <class Product>
void time_quantised(benchmark::State& s, int bits, Product product) {
  const int64_t M = s.range(0), N = s.range(1), K = s.range(2);
  const auto w = randn(size_t(N * K), 1), x = randn(size_t(M * K), 2);
  std::vector<uint8_t> q(size_t(quant_bytes(bits, N, K)));
  std::vector<float> sc(size_t(quant_scales(bits, N, K))), out(size_t(M * N));
  cpu::quantize_weight(bits, w.data(), N, K, q.data(), sc.data());
  const QuantWeight qw{bits, N, K, q.data(), sc.data()};
  for (auto _ : s) {
    product(out.data(), x.data(), qw, M);
    benchmark::DoNotOptimize(out.data());
  }
  s.counters["weight_GB/s"] =
      benchmark::Counter(double(q.size() + sc.size() * 4) * double(s.iterations()) / 1e9, benchmark::Counter::kIsRate);
}

void BM_quant(benchmark::State& s, int bits, cpu::QuantIsa isa) {
  if (!cpu::quant_isa_supported(isa)) {
    s.SkipWithError("this CPU lacks the ISA");
    return;
  }
  const cpu::QuantIsa saved = cpu::quant_isa();
  cpu::set_quant_isa(isa);
  time_quantised(s, bits, [](float* out, const float* x, const QuantWeight& w, int64_t M) {
    cpu::quant_linear_forward(out, x, w, nullptr, M);
  });
  cpu::set_quant_isa(saved);
}

void BM_act8(benchmark::State& s, int bits, cpu::Act8Isa isa) {
  if (!cpu::act8_isa_supported(isa)) {
    s.SkipWithError("this CPU lacks the ISA");
    return;
  }
  const cpu::Act8Isa saved = cpu::act8_isa();
  cpu::set_act8_isa(isa);
  time_quantised(s, bits, [](float* out, const float* x, const QuantWeight& w, int64_t M) {
    cpu::quant_linear_forward_act8(out, x, w, nullptr, M);
  });
  cpu::set_act8_isa(saved);
}

void shapes(benchmark::internal::Benchmark* b) {
  for (int64_t M : {1, 4, 64}) b->Args({M, 4096, 4096});
  b->Args({1, 11008, 4096});
  b->Args({1, 1024, 1024});   // a d_model-1024 layer, its weights in cache
  b->Args({1, 65536, 1024});  // as many rows of K = 1024 as stream from DRAM (a model's layers in turn)
  b->Args({1, 32000, 512});   // a LM head: vocab 32000, d_model 512 (bench/serve's Llama)
  b->Args({1, 1536, 512});    // that Llama's MLP up projection
  b->Unit(benchmark::kMicrosecond);
}

BENCHMARK(BM_fp32)->Apply(shapes);
BENCHMARK_CAPTURE(BM_quant, int8_avx512, 8, cpu::QuantIsa::avx512)->Apply(shapes);
BENCHMARK_CAPTURE(BM_quant, int8_avx2, 8, cpu::QuantIsa::avx2)->Apply(shapes);
BENCHMARK_CAPTURE(BM_quant, int8_portable, 8, cpu::QuantIsa::portable)->Args({1, 4096, 4096})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_quant, int4_avx512, 4, cpu::QuantIsa::avx512)->Apply(shapes);
BENCHMARK_CAPTURE(BM_quant, int4_avx2, 4, cpu::QuantIsa::avx2)->Apply(shapes);
BENCHMARK_CAPTURE(BM_quant, int4_portable, 4, cpu::QuantIsa::portable)->Args({1, 4096, 4096})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_act8, int8_vnni, 8, cpu::Act8Isa::avx512_vnni)->Apply(shapes);
BENCHMARK_CAPTURE(BM_act8, int8_avx2, 8, cpu::Act8Isa::avx2)->Apply(shapes);
BENCHMARK_CAPTURE(BM_act8, int4_vnni, 4, cpu::Act8Isa::avx512_vnni)->Apply(shapes);
BENCHMARK_CAPTURE(BM_act8, int4_avx2, 4, cpu::Act8Isa::avx2)->Apply(shapes);

}  // namespace

BENCHMARK_MAIN();
