// bf16 mixed precision on CUDA vs the CPU twin: the cast op bit for bit (edge values, NaN payloads,
// a large array), the ParamStore's shadow after to_device, layers/linear.h's bf16 forward/backward
// (cuBLASLt bf16 operands, fp32 accumulation) against the CPU's bf16 path, and one bf16 training
// step of a small model (loss and gradients). Skips visibly without a device.
// Tolerances: the bf16 operands are identical on both sides and their products exact in fp32, so
// the linear layer differs only in summation order: 1e-5 of the output's norm. The model step adds
// fp32 differences in the other kernels, which can flip a bf16 rounding here and there: 1e-4 on the
// loss, 2e-3 of the gradient's norm (bf16 vs fp32 differs by ~5e-3, tests/test_model_bf16.cpp).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "core/arena.h"
#include "core/dtype.h"
#include "core/params.h"
#include "cuda_testing.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cuda/elementwise.h"
#include "layers/linear.h"
#include "models/model.h"
#include "testing.h"

using namespace strata;
namespace st = strata::testing;
using st::DeviceVec;

namespace {

double rel_norm(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < b.size(); ++i)
    num += (double(a[i]) - double(b[i])) * (double(a[i]) - double(b[i])), den += double(b[i]) * double(b[i]);
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Weight [OC, IC] and bias [OC] in a ParamStore with a bf16 shadow, on `d`.
struct Layer {
  ParamStore ps;
  ParamRef w, b;
  Layer(int64_t IC, int64_t OC, Device d) {
    w = ps.add("w", {OC, IC}, Init::normal(0.5f), true);
    b = ps.add("b", {OC}, Init::normal(0.5f), false);
    ps.allocate(7);
    enable_bf16_shadow(ps);
    ps.to_device(d);  // moves the shadow too (a function of the values, which move unchanged)
  }
};

}  // namespace

TEST(CudaBf16, CastMatchesCpuBitForBit) {
  STRATA_SKIP_WITHOUT_CUDA();
  std::vector<float> x = {0.0f, -0.0f, 1.0f, from_bits(0x3F808000u), from_bits(0x3F818000u), from_bits(0x7F7FFFFFu),
                          from_bits(0x00008000u), from_bits(0x007FFFFFu), from_bits(0x7F800000u),
                          from_bits(0xFF800000u), from_bits(0x7FC00000u), from_bits(0x7F800001u),
                          from_bits(0xFFBFFFFFu)};
  const auto r = st::randn(size_t(1) << 18, 3, 1e3f);
  x.insert(x.end(), r.begin(), r.end());
  std::vector<uint16_t> want(x.size());
  cpu::cast_f32_to_bf16(want.data(), x.data(), int64_t(x.size()));
  DeviceVec<float> dx(x);
  DeviceVec<uint16_t> dout(x.size());
  cuda::cast_f32_to_bf16(dout.p, dx.p, int64_t(x.size()));
  const auto got = dout.host();
  size_t bad = 0;
  for (size_t i = 0; i < x.size(); ++i)
    if (got[i] != want[i] && bad++ < 5) ADD_FAILURE() << std::hex << "index " << i << ": 0x" << got[i] << " vs 0x" << want[i];
  EXPECT_EQ(bad, 0u);
}

TEST(CudaBf16, LinearForwardBackwardMatchCpu) {
  STRATA_SKIP_WITHOUT_CUDA();
  // Odd sizes as well as tensor-core friendly ones.
  struct Shape {
    int64_t N, IC, OC;
  };
  for (const Shape s : {Shape{37, 53, 29}, Shape{256, 128, 384}}) {
    const int64_t N = s.N, IC = s.IC, OC = s.OC;
    std::printf("cuda bf16 linear N=%ld IC=%ld OC=%ld\n", long(N), long(IC), long(OC));
    Layer lc(IC, OC, Device::cpu), lg(IC, OC, Device::cuda);
    const auto x = st::randn(size_t(N * IC), 1), dy = st::randn(size_t(N * OC), 2), dx0 = st::randn(size_t(N * IC), 3);
    Arena ac, ag(Device::cuda);
    Ctx cc{Device::cpu, &ac, true}, cg{Device::cuda, &ag, true};
    cc.precision = cg.precision = Precision::bf16;
    cc.params = &lc.ps;
    cg.params = &lg.ps;

    std::vector<float> y(size_t(N * OC)), dx = dx0;
    linear_forward(cc, y.data(), x.data(), lc.ps.data(lc.w), lc.ps.data(lc.b), N, IC, OC);
    linear_backward(cc, dx.data(), lc.ps.grad(lc.w), lc.ps.grad(lc.b), dy.data(), x.data(), lc.ps.data(lc.w), N, IC,
                    OC, true);

    DeviceVec<float> gx(x), gdy(dy), gy(size_t(N * OC)), gdx(dx0);
    linear_forward(cg, gy.p, gx.p, lg.ps.data(lg.w), lg.ps.data(lg.b), N, IC, OC);
    linear_backward(cg, gdx.p, lg.ps.grad(lg.w), lg.ps.grad(lg.b), gdy.p, gx.p, lg.ps.data(lg.w), N, IC, OC, true);

    const auto gc = lc.ps.host_flat_grad(), gg = lg.ps.host_flat_grad();
    std::printf("  rel norm: y %.2e dx %.2e grads %.2e\n", rel_norm(gy.host(), y), rel_norm(gdx.host(), dx),
                rel_norm(gg, gc));
    EXPECT_LT(rel_norm(gy.host(), y), 1e-5);
    EXPECT_LT(rel_norm(gdx.host(), dx), 1e-5);
    EXPECT_LT(rel_norm(gg, gc), 1e-5);
  }
}

TEST(CudaBf16, ModelTrainingStepMatchesCpu) {
  STRATA_SKIP_WITHOUT_CUDA();
  ModelConfig c;
  c.d_model = 64;
  c.pattern = "M*-";  // no MoE: a routing flip would not be a precision difference
  c.attention.heads = 4;
  c.attention.kv_heads = 2;
  c.mamba.d_state = 16;
  c.mamba.head_dim = 16;
  c.mamba.chunk = 16;
  c.mlp.hidden = 128;
  c.init_std = 0.1f;
  Model mc(c, 5), mg(c, 5);
  enable_bf16_shadow(mc.params());
  mg.params().to_device(Device::cuda);
  enable_bf16_shadow(mg.params());  // cast on the device
  const int64_t B = 2, T = 32;
  std::vector<int32_t> ids(size_t(B * T)), tgt(size_t(B * T));
  Rng r(9);
  for (auto& v : ids) v = int32_t(r.below(256));
  for (auto& v : tgt) v = int32_t(r.below(256));
  Arena ac, ag(Device::cuda);
  Ctx cc{Device::cpu, &ac, true}, cg{Device::cuda, &ag, true};
  cc.precision = cg.precision = Precision::bf16;
  cc.params = &mc.params();
  cg.params = &mg.params();
  mc.params().zero_grad();
  mg.params().zero_grad();
  const float lc = mc.forward_loss(cc, ids.data(), tgt.data(), B, T);
  mc.backward(cc);
  const float lg = mg.forward_loss(cg, ids.data(), tgt.data(), B, T);
  mg.backward(cg);
  const auto gc = mc.params().host_flat_grad(), gg = mg.params().host_flat_grad();
  std::printf("  loss cpu %.6f cuda %.6f; grad rel norm %.2e\n", lc, lg, rel_norm(gg, gc));
  EXPECT_NEAR(lg, lc, 1e-4 * std::abs(lc));
  EXPECT_LT(rel_norm(gg, gc), 2e-3);
}
