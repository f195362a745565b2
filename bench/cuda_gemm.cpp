// cuBLASLt GEMM throughput through strata's CUDA gemm family (kernels/cuda/gemm.h): square products
// (1k..8k) and the linear layers of a ~1B-parameter model (16k tokens, d_model 2048, MLP 4 x d_model,
// a 32k vocabulary), in fp32, fp32 with TF32 tensor cores (set_allow_tf32), and bf16 operands with
// fp32 accumulation and output (gemm_bf16).
//
//   build/bench/cuda_gemm [--json] [--iters N] [--sizes 1024,4096] [--shapes square,linear]
//                         [--dtypes fp32,tf32,bf16]
//
// TFLOP/s counts 2 * M * N * K. Square rows are gemm(A[M,K] @ B[K,N]); linear rows are what the
// layers call: linear_forward (out = inp @ weight^T) in fp32 / tf32, gemm_bf16 with the weight
// transposed in bf16. Inputs are uniform in [-1, 1) (the tensor cores' power, and so their clock,
// depends on the data: zeros would flatter them). With --json every result is one JSON line
// (bench/cuda_vs_torch.py reads them). In a build without CUDA, or without a device, it says so and
// exits 0.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench_args.h"

#ifdef STRATA_WITH_CUDA
#include "core/device.h"
#include "core/device_cuda.h"
#include "core/dtype.h"
#include "kernels/cuda/gemm.h"
#endif

namespace {

using strata::bench::parse_list;

struct Options {
  bool json = false;
  int iters = 10;
  std::vector<long> sizes{1024, 2048, 4096, 8192};
  bool square = true, linear = true;
  bool fp32 = true, tf32 = true, bf16 = true;
};

[[noreturn]] void usage(const char* err) {
  if (err) std::fprintf(stderr, "cuda_gemm: %s\n", err);
  std::fprintf(stderr,
               "usage: cuda_gemm [--json] [--iters N] [--sizes 1024,4096] [--shapes square,linear] "
               "[--dtypes fp32,tf32,bf16]\n");
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] {
      if (i + 1 >= argc) usage((a + " needs a value").c_str());
      return std::string(argv[++i]);
    };
    if (a == "--json") {
      o.json = true;
    } else if (a == "--iters") {
      o.iters = std::atoi(next().c_str());
      if (o.iters < 1) usage("--iters must be at least 1");
    } else if (a == "--sizes") {
      o.sizes = parse_list(next().c_str());
    } else if (a == "--shapes") {
      const std::string s = next();
      o.square = s.find("square") != std::string::npos;
      o.linear = s.find("linear") != std::string::npos;
      if (!o.square && !o.linear) usage("--shapes: expected square and/or linear");
    } else if (a == "--dtypes") {
      const std::string s = next();
      o.fp32 = s.find("fp32") != std::string::npos;
      o.tf32 = s.find("tf32") != std::string::npos;
      o.bf16 = s.find("bf16") != std::string::npos;
      if (!o.fp32 && !o.tf32 && !o.bf16) usage("--dtypes: expected fp32, tf32 and/or bf16");
    } else {
      usage(nullptr);
    }
  }
  return o;
}

#ifdef STRATA_WITH_CUDA
using namespace strata;

// A product C[M,N] = A[M,K] @ op(B): for linear rows B is the weight [N,K] (transposed), as the
// layers store it (PyTorch's layout).
struct Shape {
  std::string name;
  long M, N, K;
  bool weight_layout;
};

std::vector<Shape> shapes(const Options& o) {
  std::vector<Shape> v;
  if (o.square)
    for (long s : o.sizes) v.push_back({"square", s, s, s, false});
  if (o.linear) {
    // ~1B parameters: d_model 2048, 16 heads of 128 (fused q, k, v), MLP 4 x d_model, vocab 32000.
    const long tokens = 16384, d = 2048, ff = 4 * d, vocab = 32000;
    v.push_back({"attn_qkv", tokens, 3 * d, d, true});
    v.push_back({"attn_out", tokens, d, d, true});
    v.push_back({"mlp_up", tokens, ff, d, true});
    v.push_back({"mlp_down", tokens, d, ff, true});
    v.push_back({"lm_head", tokens, vocab, d, true});
  }
  return v;
}

// Uniform in [-1, 1) from xorshift64 (fast enough for the 2 x 64M inputs of an 8k square).
std::vector<float> host_uniform(size_t n, uint64_t seed) {
  std::vector<float> h(n);
  uint64_t x = 0x9e3779b97f4a7c15ULL * (seed + 1);
  for (auto& v : h) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    v = float(x >> 40) / float(1 << 23) - 1.0f;
  }
  return h;
}

DeviceArray<uint16_t> upload_bf16(const std::vector<float>& h) {
  std::vector<uint16_t> b(h.size());
  for (size_t i = 0; i < h.size(); ++i) b[i] = f32_to_bf16(h[i]);
  return DeviceArray<uint16_t>::from_host(b.data(), b.size(), Device::cuda);
}

// One warm-up call (it also picks cuBLASLt's algorithm), then the mean over iters, synchronised
// around the loop rather than per call.
template <class F>
double time_ms(int iters, F&& f) {
  f();
  cuda::synchronize();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) f();
  cuda::synchronize();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / iters;
}

void report(const Options& o, const Shape& s, const char* dtype, double ms) {
  const double tflops = 2.0 * s.M * s.N * s.K / ms / 1e9;
  if (o.json)
    std::printf("{\"impl\":\"strata\",\"op\":\"gemm\",\"name\":\"%s\",\"M\":%ld,\"N\":%ld,\"K\":%ld,\"dtype\":\"%s\","
                "\"weight_layout\":%s,\"ms\":%.4f,\"tflops\":%.3f}\n",
                s.name.c_str(), s.M, s.N, s.K, dtype, s.weight_layout ? "true" : "false", ms, tflops);
  else
    std::printf("gemm %-9s M=%-6ld N=%-6ld K=%-6ld %-5s %9.3f ms %8.2f TFLOP/s\n", s.name.c_str(), s.M, s.N, s.K, dtype,
                ms, tflops);
  std::fflush(stdout);
}

void run(const Options& o) {
  for (const Shape& s : shapes(o)) {
    const auto a = host_uniform(size_t(s.M) * s.K, 1), b = host_uniform(size_t(s.K) * s.N, 2);
    DeviceArray<float> out(size_t(s.M) * s.N, Device::cuda);
    if (o.fp32 || o.tf32) {
      const auto A = DeviceArray<float>::from_host(a.data(), a.size(), Device::cuda);
      const auto B = DeviceArray<float>::from_host(b.data(), b.size(), Device::cuda);
      auto product = [&] {
        if (s.weight_layout)
          cuda::linear_forward(out.data(), A.data(), B.data(), nullptr, s.M, s.K, s.N);
        else
          cuda::gemm(false, false, s.M, s.N, s.K, 1.0f, A.data(), s.K, B.data(), s.N, 0.0f, out.data(), s.N);
      };
      for (bool tf32 : {false, true}) {
        if (!(tf32 ? o.tf32 : o.fp32)) continue;
        cuda::set_allow_tf32(tf32);
        report(o, s, tf32 ? "tf32" : "fp32", time_ms(o.iters, product));
      }
      cuda::set_allow_tf32(false);
    }
    if (o.bf16) {
      const auto A = upload_bf16(a), B = upload_bf16(b);
      const double ms = time_ms(o.iters, [&] {
        cuda::gemm_bf16(false, s.weight_layout, s.M, s.N, s.K, 1.0f, A.data(), s.K, B.data(),
                        s.weight_layout ? s.K : s.N, 0.0f, out.data(), s.N);
      });
      report(o, s, "bf16", ms);
    }
  }
}
#endif

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
#ifdef STRATA_WITH_CUDA
  if (!strata::cuda::device_available()) {
    std::printf("cuda_gemm: %s\n", strata::cuda::unavailable_reason().c_str());
    return 0;
  }
  try {
    run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cuda_gemm: %s\n", e.what());
    return 1;
  }
#else
  (void)o;
  std::printf("cuda_gemm: this binary was built without CUDA (configure with -DSTRATA_CUDA=ON)\n");
#endif
  return 0;
}
