// CUDA quant_linear_forward vs its CPU twin (kernels/cpu/quant_gemm.h) on the same quantised bytes:
// int8 and int4, decode (M = 1..3) and prefill-sized M, odd N and K (int8), with and without bias.
// Both sum in fp32 in different orders: tolerance 1e-5 relative to sum_k |x_k w_k|.
// Skips visibly without a device (the CPU emulator runs it in CI).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "core/arena.h"
#include "cuda_testing.h"
#include "infer/decoder.h"
#include "model_testing.h"
#include "models/quantize.h"
#include "kernels/cpu/quant_gemm.h"
#include "kernels/cuda/quant_gemm.h"
#include "testing.h"

using namespace strata;
namespace st = strata::testing;
using st::DeviceVec;

namespace {

void check(int bits, int64_t M, int64_t N, int64_t K, bool with_bias, uint64_t seed) {
  const auto w = st::randn(size_t(N * K), seed, 0.05f);
  const auto x = st::randn(size_t(M * K), seed + 1);
  const auto bias = st::randn(size_t(N), seed + 2);
  std::vector<uint8_t> q(size_t(quant_bytes(bits, N, K)));
  std::vector<float> s(size_t(quant_scales(bits, N, K)));
  cpu::quantize_weight(bits, w.data(), N, K, q.data(), s.data());
  std::vector<float> ref(size_t(M * N));
  cpu::quant_linear_forward(ref.data(), x.data(), {bits, N, K, q.data(), s.data()}, with_bias ? bias.data() : nullptr, M);

  DeviceVec<uint8_t> dq(q);
  DeviceVec<float> ds(s), dx(x), db(bias), dout(size_t(M * N));
  cuda::quant_linear_forward(dout.p, dx.p, {bits, N, K, dq.p, ds.p}, with_bias ? db.p : nullptr, M);
  const auto out = dout.host();

  std::vector<float> dqw(size_t(N * K));
  cpu::dequantize_weight({bits, N, K, q.data(), s.data()}, dqw.data());
  double worst = 0, max_abs = 0;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double mag = with_bias ? std::fabs(double(bias[size_t(n)])) : 0.0;
      for (int64_t k = 0; k < K; ++k) mag += std::fabs(double(x[size_t(m * K + k)]) * double(dqw[size_t(n * K + k)]));
      const double err = std::fabs(double(out[size_t(m * N + n)]) - double(ref[size_t(m * N + n)]));
      max_abs = std::max(max_abs, err);
      worst = std::max(worst, err / (1e-5 * mag + 1e-30));
    }
  std::printf("cuda int%d M=%ld N=%ld K=%ld bias=%d: max |cuda - cpu| %.3g, worst err / tolerance %.3g\n", bits,
              long(M), long(N), long(K), int(with_bias), max_abs, worst);
  EXPECT_LE(worst, 1.0) << "int" << bits << " M=" << M << " N=" << N << " K=" << K;
}

TEST(CudaQuantGemm, MatchesTheCpuTwin) {
  STRATA_SKIP_WITHOUT_CUDA();
  for (int64_t M : {1, 3, 9}) {
    check(8, M, 67, 83, M == 1, 1);
    check(8, M, 40, 256, true, 2);
    check(4, M, 67, 96, M != 1, 3);
    check(4, M, 33, 256, false, 4);
  }
}

// The int8-activation twin gives the CPU's bits (the same codes, exact block dots, the same fmas and
// sum tree), whatever the CPU ISA path.
TEST(CudaQuantGemm, Int8ActivationsGiveTheCpuTwinsBits) {
  STRATA_SKIP_WITHOUT_CUDA();
  struct Shape {
    int bits;
    int64_t M, N, K;
  };
  for (const Shape& c : {Shape{8, 1, 67, 83}, Shape{8, 3, 40, 256}, Shape{8, 9, 21, 7}, Shape{4, 1, 67, 96},
                         Shape{4, 5, 33, 256}}) {
    const auto w = st::randn(size_t(c.N * c.K), 7, 0.05f);
    const auto x = st::randn(size_t(c.M * c.K), 8);
    const auto bias = st::randn(size_t(c.N), 9);
    std::vector<uint8_t> q(size_t(quant_bytes(c.bits, c.N, c.K)));
    std::vector<float> s(size_t(quant_scales(c.bits, c.N, c.K)));
    cpu::quantize_weight(c.bits, w.data(), c.N, c.K, q.data(), s.data());
    std::vector<float> ref(size_t(c.M * c.N));
    cpu::quant_linear_forward_act8(ref.data(), x.data(), {c.bits, c.N, c.K, q.data(), s.data()}, bias.data(), c.M);
    DeviceVec<uint8_t> dq(q);
    DeviceVec<float> ds(s), dx(x), db(bias), dout(size_t(c.M * c.N));
    cuda::quant_linear_forward_act8(dout.p, dx.p, {c.bits, c.N, c.K, dq.p, ds.p}, db.p, c.M);
    const auto out = dout.host();
    double d = 0;
    for (size_t i = 0; i < out.size(); ++i) d = std::max(d, double(std::fabs(out[i] - ref[i])));
    std::printf("cuda act8 int%d M=%ld N=%ld K=%ld: max |cuda - cpu| %.3g\n", c.bits, long(c.M), long(c.N), long(c.K), d);
    EXPECT_EQ(0, std::memcmp(out.data(), ref.data(), out.size() * sizeof(float)))
        << "int" << c.bits << " M=" << c.M << " K=" << c.K << ": max diff " << d;
  }
}

// A quantised model moved to the device (its quantised bytes follow the parameters on first use)
// computes what the same quantised model computes on the host: forward (M = 11) and decode steps
// (M = 1), with CUDA graphs too.
TEST(CudaQuantGemm, QuantisedModelOnTheDeviceMatchesTheHost) {
  STRATA_SKIP_WITHOUT_CUDA();
  for (int bits : {8, 4, -8}) {  // -8: int8 weights with int8 activations
    const ModelConfig cfg = st::tiny_model("M*-", 2);
    Model cpu_m(cfg, 3), gpu_m(cfg, 3);
    quantize_model(cpu_m, std::abs(bits));
    quantize_model(gpu_m, std::abs(bits));
    if (bits < 0) {
      set_activations(cpu_m, "int8");
      set_activations(gpu_m, "int8");
    }
    gpu_m.params().to_device(Device::cuda);
    const int64_t T = 11, V = cpu_m.vocab();
    const auto ids = st::random_tokens(T, 5);
    std::vector<float> want(size_t(T * V)), got(size_t(T * V));
    {
      Arena a;
      Ctx ctx{Device::cpu, &a, false};
      cpu_m.forward_logits(ctx, want.data(), ids.data(), 1, T, nullptr);
    }
    {
      Arena a(Device::cuda);
      Ctx ctx{Device::cuda, &a, false};
      gpu_m.forward_logits(ctx, got.data(), ids.data(), 1, T, nullptr);
    }
    double d = 0;
    for (size_t i = 0; i < got.size(); ++i) d = std::max(d, double(std::fabs(got[i] - want[i])));
    std::printf("int%d quantised model: max |cuda - cpu| forward %.3g\n", bits, d);
    EXPECT_LE(d, 1e-4);
    for (bool graphs : {false, true}) {
      Decoder dec(gpu_m, 1, T, DecoderOptions{graphs});
      std::vector<float> steps(size_t(T * V));
      for (int64_t t = 0; t < T; ++t) dec.step(&ids[size_t(t)], steps.data() + t * V);
      double e = 0;
      for (size_t i = 0; i < got.size(); ++i) e = std::max(e, double(std::fabs(steps[i] - want[i])));
      std::printf("int%d quantised model: max |cuda decode (graphs %d) - cpu forward| %.3g\n", bits, int(graphs), e);
      EXPECT_LE(e, 1e-4);
    }
  }
}

}  // namespace
