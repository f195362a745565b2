// CUDA flash attention throughput: forward and backward TFLOP/s for causal training shapes
// (T = 1k..16k, head dims 64 / 128, B*T = 16k tokens, Hq * hd = 2048 as in FlashAttention-2's
// benchmark), and decode over a cache (Tq = 1, Tk = 1k..16k) as memory bandwidth.
//
//   build/bench/cuda_attention [--json] [--iters N] [--T 1024,4096] [--hd 64,128] [--gqa G]
//
// FLOPs count the causal half only: forward 4 * B * Hq * T^2 * hd / 2, backward 2.5x that
// (FlashAttention's convention). Decode reports the bytes of K and V read per second. With --json
// every result is one JSON line (bench/cuda_vs_torch.py reads them). In a build without CUDA it
// says so and exits 0.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench_args.h"

#ifdef STRATA_WITH_CUDA
#include "core/device_cuda.h"
#include "core/rng.h"
#include "kernels/cuda/attention.h"
#endif

namespace {

using strata::bench::parse_list;

struct Options {
  bool json = false;
  int iters = 10;
  std::vector<long> Ts{1024, 2048, 4096, 8192, 16384};
  std::vector<long> hds{64, 128};
  long gqa = 1;  // query heads per kv head
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "cuda_attention: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--json")
      o.json = true;
    else if (a == "--iters")
      o.iters = std::atoi(next());
    else if (a == "--T")
      o.Ts = parse_list(next());
    else if (a == "--hd")
      o.hds = parse_list(next());
    else if (a == "--gqa")
      o.gqa = std::atol(next());
    else {
      std::fprintf(stderr, "usage: cuda_attention [--json] [--iters N] [--T 1024,4096] [--hd 64,128] [--gqa G]\n");
      std::exit(2);
    }
  }
  return o;
}

#ifdef STRATA_WITH_CUDA
using namespace strata;

struct Dev {
  float* p;
  explicit Dev(size_t n, uint64_t seed) : p(static_cast<float*>(cuda::alloc(n * sizeof(float)))) {
    std::vector<float> h(n);
    Rng r(seed);
    for (auto& x : h) x = r.normal();
    cuda::copy_to_device(p, h.data(), n * sizeof(float));
  }
  ~Dev() { cuda::free(p); }
};

// One warm-up call, then the mean over iters (synchronised around the loop, not per call).
template <class F>
double time_ms(int iters, F&& f) {
  f();
  cuda::synchronize();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) f();
  cuda::synchronize();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / iters;
}

void report(const Options& o, const char* op, long B, long T, long Hq, long Hkv, long hd, double ms, double tflops,
            double gbs) {
  if (o.json)
    std::printf(
        "{\"impl\":\"strata\",\"op\":\"%s\",\"B\":%ld,\"T\":%ld,\"Hq\":%ld,\"Hkv\":%ld,\"hd\":%ld,\"ms\":%.4f,"
        "\"tflops\":%.3f,\"gbs\":%.1f}\n",
        op, B, T, Hq, Hkv, hd, ms, tflops, gbs);
  else
    std::printf("%-14s B=%-3ld T=%-6ld Hq=%-3ld Hkv=%-3ld hd=%-4ld %9.3f ms %8.2f TFLOP/s %8.1f GB/s\n", op, B, T, Hq,
                Hkv, hd, ms, tflops, gbs);
  std::fflush(stdout);
}

void run(const Options& o) {
  for (long hd : o.hds)
    for (long T : o.Ts) {
      const long Hq = 2048 / hd, Hkv = Hq / o.gqa, B = std::max(1L, 16384 / T);
      const float scale = 1.0f / std::sqrt(float(hd));
      const size_t nq = size_t(B) * T * Hq * hd, nkv = size_t(B) * T * Hkv * hd;
      Dev q(nq, 1), k(nkv, 2), v(nkv, 3), out(nq, 4), dout(nq, 5), dq(nq, 6), dk(nkv, 7), dv(nkv, 8);
      Dev lse(size_t(B) * Hq * T, 9);
      const double flops = 4.0 * B * Hq * double(T) * T * hd / 2;
      const double fwd = time_ms(o.iters, [&] {
        cuda::attention_forward(out.p, lse.p, q.p, k.p, v.p, B, T, T, Hq, Hkv, hd, hd, scale, T * Hkv * hd, Hkv * hd,
                                T * Hkv * hd, Hkv * hd);
      });
      report(o, "attention_fwd", B, T, Hq, Hkv, hd, fwd, flops / fwd / 1e9, 0);
      {  // bf16 tensor-core forward on the same shapes (q, k, v as bf16 bits)
        auto* qb = static_cast<uint16_t*>(cuda::alloc(nq * 2));
        auto* kb = static_cast<uint16_t*>(cuda::alloc(nkv * 2));
        auto* vb = static_cast<uint16_t*>(cuda::alloc(nkv * 2));
        cuda::memset_zero(qb, nq * 2), cuda::memset_zero(kb, nkv * 2), cuda::memset_zero(vb, nkv * 2);
        const double f16 = time_ms(o.iters, [&] {
          cuda::attention_forward_bf16(out.p, lse.p, qb, kb, vb, B, T, T, Hq, Hkv, hd, scale, T * Hkv * hd, Hkv * hd,
                                       T * Hkv * hd, Hkv * hd);
        });
        report(o, "attention_fwd_bf16", B, T, Hq, Hkv, hd, f16, flops / f16 / 1e9, 0);
        cuda::free(qb), cuda::free(kb), cuda::free(vb);
      }
      const double bwd = time_ms(o.iters, [&] {
        cuda::attention_backward(dq.p, dk.p, dv.p, dout.p, q.p, k.p, v.p, out.p, lse.p, B, T, Hq, Hkv, hd, hd, scale);
      });
      report(o, "attention_bwd", B, T, Hq, Hkv, hd, bwd, 2.5 * flops / bwd / 1e9, 0);
      // Decode: one new query per sequence over a cache of T tokens, B = 8 sequences.
      const long Bd = 8;
      Dev kc(size_t(Bd) * T * Hkv * hd, 10), vc(size_t(Bd) * T * Hkv * hd, 11), qd(size_t(Bd) * Hq * hd, 12),
          od(size_t(Bd) * Hq * hd, 13);
      const double dec = time_ms(o.iters * 10, [&] {
        cuda::attention_forward(od.p, nullptr, qd.p, kc.p, vc.p, Bd, 1, T, Hq, Hkv, hd, hd, scale, T * Hkv * hd,
                                Hkv * hd, T * Hkv * hd, Hkv * hd);
      });
      const double bytes = 2.0 * Bd * T * Hkv * hd * sizeof(float);
      report(o, "attention_decode", Bd, T, Hq, Hkv, hd, dec, 4.0 * Bd * Hq * double(T) * hd / dec / 1e9,
             bytes / dec / 1e6);
    }
}
#endif

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
#ifdef STRATA_WITH_CUDA
  if (!strata::cuda::device_available()) {
    std::printf("cuda_attention: %s\n", strata::cuda::unavailable_reason().c_str());
    return 0;
  }
  run(o);
#else
  (void)o;
  std::printf("cuda_attention: this binary was built without CUDA (configure with -DSTRATA_CUDA=ON)\n");
#endif
  return 0;
}
