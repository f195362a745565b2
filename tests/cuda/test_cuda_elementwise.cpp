// The elementwise and row-wise CUDA families vs their CPU twins: activation (silu, swiglu),
// elementwise (residual add, scale, mul-add, -exp, copy, strided copy), norm (rmsnorm, gated
// rmsnorm), rope (prefill and a decode step at pos0 > 0, partial rotary dims, in place), embedding
// (forward with the id check, deterministic sorted backward), loss (softmax-xent forward and fused
// backward, in place, ignored rows, the target check), optim (AdamW with and without mask,
// sum_squares).
// Skips visibly without a device. Tolerances (fp32): elementwise 1e-6 abs + 1e-5 rel; reductions
// (norms, losses, column sums) 1e-5 abs + 1e-4 rel.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "cuda_testing.h"
#include "kernels/cpu/activation.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/loss.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/optim.h"
#include "kernels/cpu/rope.h"
#include "kernels/cuda/activation.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/embedding.h"
#include "kernels/cuda/loss.h"
#include "kernels/cuda/norm.h"
#include "kernels/cuda/optim.h"
#include "kernels/cuda/rope.h"
#include "testing.h"

using namespace strata;
namespace st = strata::testing;
using st::DeviceVec;

namespace {

constexpr double kEwAbs = 1e-6, kEwRel = 1e-5, kRedAbs = 1e-5, kRedRel = 1e-4;

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(CudaActivation, SiluSwigluForwardBackward) {
  STRATA_SKIP_WITHOUT_CUDA();
  for (int64_t N : {int64_t(1), int64_t(10007), int64_t(1) << 18}) {
    std::printf("cuda activation N=%ld\n", long(N));
    const auto g = st::randn(static_cast<size_t>(N), 1, 4.0f), u = st::randn(static_cast<size_t>(N), 2), dy = st::randn(static_cast<size_t>(N), 3);
    DeviceVec<float> dg(g), du(u), ddy(dy), o(static_cast<size_t>(N)), o2(static_cast<size_t>(N));
    std::vector<float> c(static_cast<size_t>(N)), c2(static_cast<size_t>(N));

    cpu::silu_forward(c.data(), g.data(), N);
    cuda::silu_forward(o.p, dg.p, N);
    st::expect_close(o.host(), c, kEwAbs, kEwRel, "silu");
    cpu::silu_backward(c.data(), dy.data(), g.data(), N);
    cuda::silu_backward(o.p, ddy.p, dg.p, N);
    st::expect_close(o.host(), c, kEwAbs, kEwRel, "silu dx");

    cpu::swiglu_forward(c.data(), g.data(), u.data(), N);
    cuda::swiglu_forward(o.p, dg.p, du.p, N);
    st::expect_close(o.host(), c, kEwAbs, kEwRel, "swiglu");
    cpu::swiglu_backward(c.data(), c2.data(), dy.data(), g.data(), u.data(), N);
    cuda::swiglu_backward(o.p, o2.p, ddy.p, dg.p, du.p, N);
    st::expect_close(o.host(), c, kEwAbs, kEwRel, "swiglu dgate");
    st::expect_close(o2.host(), c2, kEwAbs, kEwRel, "swiglu dup");

    // In place (out == x), as the layers call it.
    DeviceVec<float> inplace(g);
    cuda::silu_forward(inplace.p, inplace.p, N);
    cpu::silu_forward(c.data(), g.data(), N);
    st::expect_close(inplace.host(), c, kEwAbs, kEwRel, "silu in place");
  }
}

TEST(CudaElementwise, AddScaleMulAddNegExpCopy) {
  STRATA_SKIP_WITHOUT_CUDA();
  const int64_t N = 70001;
  const auto x = st::randn(static_cast<size_t>(N), 11), y0 = st::randn(static_cast<size_t>(N), 12), a = st::randn(static_cast<size_t>(N), 13);
  std::vector<float> y = y0;
  DeviceVec<float> dx(x), dy(y0), da(a);
  cpu::add_inplace(y.data(), x.data(), N);
  cuda::add_inplace(dy.p, dx.p, N);
  st::expect_close(dy.host(), y, 0, 0, "add_inplace (exact)");
  cpu::scale_inplace(y.data(), -0.37f, N);
  cuda::scale_inplace(dy.p, -0.37f, N);
  st::expect_close(dy.host(), y, 0, 0, "scale_inplace (exact)");
  cpu::mul_add_inplace(y.data(), x.data(), a.data(), N);
  cuda::mul_add_inplace(dy.p, dx.p, da.p, N);
  st::expect_close(dy.host(), y, kEwAbs, kEwRel, "mul_add_inplace");
  std::vector<float> e(static_cast<size_t>(N));
  DeviceVec<float> de(static_cast<size_t>(N));
  cpu::neg_exp(e.data(), x.data(), N);
  cuda::neg_exp(de.p, dx.p, N);
  st::expect_close(de.host(), e, kEwAbs, kEwRel, "neg_exp");
  cuda::copy_f32(de.p, dx.p, N);
  EXPECT_TRUE(bitwise_equal(de.host(), x));

  // A block of columns between strided buffers (and the contiguous shortcut).
  const int64_t rows = 301, src_ld = 37, dst_ld = 20, cols = 11;
  const auto src = st::randn(static_cast<size_t>(rows * src_ld), 14);
  std::vector<float> dst0(static_cast<size_t>(rows * dst_ld), -1.0f), want = dst0;
  cpu::copy_strided(want.data() + 2, dst_ld, src.data() + 5, src_ld, rows, cols);
  DeviceVec<float> gsrc(src), gdst(dst0);
  cuda::copy_strided(gdst.p + 2, dst_ld, gsrc.p + 5, src_ld, rows, cols);
  EXPECT_TRUE(bitwise_equal(gdst.host(), want));
  std::vector<float> packed(static_cast<size_t>(rows * cols));
  cpu::copy_strided(packed.data(), cols, src.data(), cols, rows, cols);
  DeviceVec<float> gpacked(packed.size());
  cuda::copy_strided(gpacked.p, cols, gsrc.p, cols, rows, cols);
  EXPECT_TRUE(bitwise_equal(gpacked.host(), packed));
  // RoPE pair reordering both ways (MLA's interleaved layout).
  for (bool split : {true, false}) {
    std::vector<float> pw = dst0;
    cpu::copy_strided_pairs(pw.data() + 1, dst_ld, src.data() + 5, src_ld, rows, 12, split);
    DeviceVec<float> gp(dst0);
    cuda::copy_strided_pairs(gp.p + 1, dst_ld, gsrc.p + 5, src_ld, rows, 12, split);
    EXPECT_TRUE(bitwise_equal(gp.host(), pw)) << "split_pairs " << split;
  }
  std::vector<float> acc = dst0;
  cpu::add_strided(acc.data() + 2, dst_ld, src.data() + 5, src_ld, rows, cols);
  DeviceVec<float> gacc(dst0);
  cuda::add_strided(gacc.p + 2, dst_ld, gsrc.p + 5, src_ld, rows, cols);
  EXPECT_TRUE(bitwise_equal(gacc.host(), acc));
}

TEST(CudaNorm, RmsnormForwardBackward) {
  STRATA_SKIP_WITHOUT_CUDA();
  struct S {
    int64_t N, D;
  };
  uint64_t seed = 20;
  for (S s : {S{1, 7}, S{37, 100}, S{300, 1024}, S{5, 4099}}) {
    std::printf("cuda rmsnorm N=%ld D=%ld\n", long(s.N), long(s.D));
    const auto x = st::randn(static_cast<size_t>(s.N * s.D), seed++, 2.0f), w = st::randn(static_cast<size_t>(s.D), seed++);
    const auto dy = st::randn(x.size(), seed++), dw0 = st::randn(w.size(), seed++);
    std::vector<float> y(x.size()), rstd(static_cast<size_t>(s.N)), dx(x.size()), dw = dw0;
    cpu::rmsnorm_forward(y.data(), rstd.data(), x.data(), w.data(), s.N, s.D, 1e-5f);
    cpu::rmsnorm_backward(dx.data(), dw.data(), dy.data(), x.data(), w.data(), rstd.data(), s.N, s.D);
    DeviceVec<float> gx(x), gw(w), gdy(dy), gy(x.size()), grstd(static_cast<size_t>(s.N)), gdx(x.size()), gdw(dw0);
    cuda::rmsnorm_forward(gy.p, grstd.p, gx.p, gw.p, s.N, s.D, 1e-5f);
    cuda::rmsnorm_backward(gdx.p, gdw.p, gdy.p, gx.p, gw.p, grstd.p, s.N, s.D);
    st::expect_close(gy.host(), y, kRedAbs, kRedRel, "y");
    st::expect_close(grstd.host(), rstd, kRedAbs, kRedRel, "rstd");
    st::expect_close(gdx.host(), dx, kRedAbs, kRedRel, "dx");
    st::expect_close(gdw.host(), dw, kRedAbs, kRedRel, "dw (accumulated)");
    // dw is a fixed-order column sum: a second backward adds bitwise the same amount.
    DeviceVec<float> gdw2(dw0);
    cuda::rmsnorm_backward(gdx.p, gdw2.p, gdy.p, gx.p, gw.p, grstd.p, s.N, s.D);
    EXPECT_TRUE(bitwise_equal(gdw2.host(), gdw.host()));
  }
}

TEST(CudaNorm, GatedRmsnormForwardBackward) {
  STRATA_SKIP_WITHOUT_CUDA();
  struct S {
    int64_t N, D, group;
  };
  uint64_t seed = 40;
  for (S s : {S{1, 64, 64}, S{33, 96, 32}, S{130, 512, 128}, S{7, 40, 8}}) {
    std::printf("cuda rmsnorm_gated N=%ld D=%ld group=%ld\n", long(s.N), long(s.D), long(s.group));
    const int64_t ng = s.D / s.group;
    const auto x = st::randn(static_cast<size_t>(s.N * s.D), seed++), z = st::randn(x.size(), seed++, 2.0f);
    const auto w = st::randn(static_cast<size_t>(s.D), seed++), dy = st::randn(x.size(), seed++), dw0 = st::randn(w.size(), seed++);
    std::vector<float> y(x.size()), rstd(static_cast<size_t>(s.N * ng)), dx(x.size()), dz(x.size()), dw = dw0;
    cpu::rmsnorm_gated_forward(y.data(), rstd.data(), x.data(), z.data(), w.data(), s.N, s.D, s.group, 1e-6f);
    cpu::rmsnorm_gated_backward(dx.data(), dz.data(), dw.data(), dy.data(), x.data(), z.data(), w.data(), rstd.data(),
                                s.N, s.D, s.group);
    DeviceVec<float> gx(x), gz(z), gw(w), gdy(dy), gy(x.size()), grstd(rstd.size()), gdx(x.size()), gdz(x.size()),
        gdw(dw0);
    cuda::rmsnorm_gated_forward(gy.p, grstd.p, gx.p, gz.p, gw.p, s.N, s.D, s.group, 1e-6f);
    cuda::rmsnorm_gated_backward(gdx.p, gdz.p, gdw.p, gdy.p, gx.p, gz.p, gw.p, grstd.p, s.N, s.D, s.group);
    st::expect_close(gy.host(), y, kRedAbs, kRedRel, "y");
    st::expect_close(grstd.host(), rstd, kRedAbs, kRedRel, "rstd");
    st::expect_close(gdx.host(), dx, kRedAbs, kRedRel, "dx");
    st::expect_close(gdz.host(), dz, kRedAbs, kRedRel, "dz");
    st::expect_close(gdw.host(), dw, kRedAbs, kRedRel, "dw (accumulated)");
  }
}

std::vector<float> default_inv_freq(int64_t rot, double theta) {
  std::vector<float> f(static_cast<size_t>(rot / 2));
  for (int64_t i = 0; i < rot / 2; ++i) f[static_cast<size_t>(i)] = float(1.0 / std::pow(theta, double(2 * i) / double(rot)));
  return f;
}

TEST(CudaRope, ForwardBackwardPrefillAndDecode) {
  STRATA_SKIP_WITHOUT_CUDA();
  struct S {
    int64_t B, T, H, hd, rot, pos0;
  };
  uint64_t seed = 60;
  // Prefill from 0, a partial rotary dim with pass-through channels, and decode steps (T = 1) late
  // in a long sequence, where the angles are large.
  for (S s : {S{2, 13, 3, 64, 64, 0}, S{1, 31, 4, 80, 32, 5}, S{3, 1, 8, 128, 128, 4095}, S{2, 1, 2, 64, 16, 100000}}) {
    std::printf("cuda rope B=%ld T=%ld H=%ld hd=%ld rot=%ld pos0=%ld\n", long(s.B), long(s.T), long(s.H), long(s.hd),
                long(s.rot), long(s.pos0));
    const auto inv = default_inv_freq(s.rot, 10000.0);
    const auto x = st::randn(static_cast<size_t>(s.B * s.T * s.H * s.hd), seed++);
    std::vector<float> out(x.size()), back(x.size());
    cpu::rope_forward(out.data(), x.data(), s.B, s.T, s.H, s.hd, s.rot, s.pos0, inv.data());
    cpu::rope_backward(back.data(), x.data(), s.B, s.T, s.H, s.hd, s.rot, s.pos0, inv.data());
    DeviceVec<float> gx(x), gout(x.size()), gback(x.size());
    cuda::rope_forward(gout.p, gx.p, s.B, s.T, s.H, s.hd, s.rot, s.pos0, inv.data());
    cuda::rope_backward(gback.p, gx.p, s.B, s.T, s.H, s.hd, s.rot, s.pos0, inv.data());
    st::expect_close(gout.host(), out, kEwAbs, kEwRel, "rope forward");
    st::expect_close(gback.host(), back, kEwAbs, kEwRel, "rope backward");
    cuda::rope_forward(gx.p, gx.p, s.B, s.T, s.H, s.hd, s.rot, s.pos0, inv.data());  // in place
    st::expect_close(gx.host(), out, kEwAbs, kEwRel, "rope in place");
  }
}

TEST(CudaEmbedding, ForwardAndDeterministicBackward) {
  STRATA_SKIP_WITHOUT_CUDA();
  const int64_t V = 50, D = 70, N = 300;
  const auto table = st::randn(static_cast<size_t>(V * D), 80), dout = st::randn(static_cast<size_t>(N * D), 81), dt0 = st::randn(table.size(), 82);
  std::vector<int32_t> ids(static_cast<size_t>(N));
  Rng r(83);
  for (auto& id : ids) id = int32_t(r.below(uint64_t(V)) % 7 == 0 ? 3 : r.below(uint64_t(V)));  // id 3 repeats a lot
  std::vector<float> out(static_cast<size_t>(N * D)), dt = dt0;
  cpu::embedding_forward(out.data(), table.data(), ids.data(), N, V, D);
  cpu::embedding_backward(dt.data(), dout.data(), ids.data(), N, D);
  DeviceVec<float> gt(table), gout(out.size()), gdout(dout), gdt(dt0), gdt2(dt0);
  DeviceVec<int32_t> gids(ids);
  cuda::embedding_forward(gout.p, gt.p, gids.p, N, V, D);
  EXPECT_TRUE(bitwise_equal(gout.host(), out));
  cuda::embedding_backward(gdt.p, gdout.p, gids.p, N, D);
  st::expect_close(gdt.host(), dt, kRedAbs, kRedRel, "dtable");
  cuda::embedding_backward(gdt2.p, gdout.p, gids.p, N, D);
  EXPECT_TRUE(bitwise_equal(gdt2.host(), gdt.host())) << "embedding backward is not deterministic";

  ids[17] = int32_t(V);  // out of range: the CPU twin's check, reported the same way
  DeviceVec<int32_t> bad(ids);
  EXPECT_THROW(cuda::embedding_forward(gout.p, gt.p, bad.p, N, V, D), Error);
  ids[17] = -2;
  DeviceVec<int32_t> neg(ids);
  EXPECT_THROW(cuda::embedding_backward(gdt.p, gdout.p, neg.p, N, D), Error);
}

TEST(CudaLoss, SoftmaxXentForwardAndFusedBackward) {
  STRATA_SKIP_WITHOUT_CUDA();
  struct S {
    int64_t N, V;
  };
  uint64_t seed = 100;
  for (S s : {S{1, 2}, S{37, 257}, S{64, 1000}, S{9, 50304}}) {
    std::printf("cuda softmax_xent N=%ld V=%ld\n", long(s.N), long(s.V));
    const auto logits = st::randn(static_cast<size_t>(s.N * s.V), seed++, 3.0f);
    std::vector<int32_t> tgt(static_cast<size_t>(s.N));
    Rng r(seed++);
    for (size_t i = 0; i < tgt.size(); ++i) tgt[i] = (i % 5 == 3) ? -1 : int32_t(r.below(uint64_t(s.V)));
    const float scale = 1.0f / float(s.N);
    std::vector<float> losses(static_cast<size_t>(s.N)), dl(logits.size());
    const float mean = cpu::softmax_xent_forward_backward(losses.data(), dl.data(), logits.data(), tgt.data(), s.N, s.V,
                                                         scale);
    DeviceVec<float> gl(logits), glosses(static_cast<size_t>(s.N)), gdl(logits.size());
    DeviceVec<int32_t> gt(tgt);
    const float gmean = cuda::softmax_xent_forward_backward(glosses.p, gdl.p, gl.p, gt.p, s.N, s.V, scale);
    std::printf("  mean loss cpu=%.7f cuda=%.7f\n", mean, gmean);
    EXPECT_NEAR(gmean, mean, 1e-5 * (1 + std::abs(mean)));
    st::expect_close(glosses.host(), losses, kRedAbs, kRedRel, "losses");
    st::expect_close(gdl.host(), dl, 1e-7, kRedRel, "dlogits");
    // In place over the logits, as the model calls it.
    const float gmean2 = cuda::softmax_xent_forward_backward(glosses.p, gl.p, gl.p, gt.p, s.N, s.V, scale);
    EXPECT_EQ(gmean2, gmean);
    EXPECT_TRUE(bitwise_equal(gl.host(), gdl.host())) << "in-place gradient differs";
    // Forward only.
    DeviceVec<float> gl2(logits);
    const float fmean = cuda::softmax_xent_forward(glosses.p, gl2.p, gt.p, s.N, s.V);
    const float cfmean = cpu::softmax_xent_forward(losses.data(), logits.data(), tgt.data(), s.N, s.V);
    EXPECT_NEAR(fmean, cfmean, 1e-5 * (1 + std::abs(cfmean)));
  }
  // All rows ignored: mean 0, gradient 0.
  std::vector<int32_t> none = {-1, -1};
  DeviceVec<int32_t> gn(none);
  DeviceVec<float> lg(st::randn(8, 1)), ls(static_cast<size_t>(2)), dg(static_cast<size_t>(8));
  EXPECT_EQ(cuda::softmax_xent_forward_backward(ls.p, dg.p, lg.p, gn.p, 2, 4, 0.5f), 0.0f);
  for (float v : dg.host()) EXPECT_EQ(v, 0.0f);
  // A target outside the vocabulary throws, as on the CPU.
  std::vector<int32_t> oob = {1, 4};
  DeviceVec<int32_t> go(oob);
  EXPECT_THROW(cuda::softmax_xent_forward(ls.p, lg.p, go.p, 2, 4), Error);
}

TEST(CudaOptim, AdamwAndSumSquares) {
  STRATA_SKIP_WITHOUT_CUDA();
  const int64_t N = 100003;
  const auto p0 = st::randn(static_cast<size_t>(N), 120), g = st::randn(static_cast<size_t>(N), 121);
  const auto m0 = st::randn(static_cast<size_t>(N), 122, 0.1f);
  auto v0 = st::randn(static_cast<size_t>(N), 123, 0.1f);
  for (auto& v : v0) v = v * v;
  std::vector<uint8_t> mask(static_cast<size_t>(N));
  for (size_t i = 0; i < mask.size(); ++i) mask[i] = uint8_t(i % 3 != 0);
  for (bool with_mask : {false, true}) {
    std::printf("cuda adamw mask=%d\n", with_mask);
    auto p = p0, m = m0, v = v0;
    for (int64_t t = 1; t <= 3; ++t)
      cpu::adamw_update(p.data(), g.data(), m.data(), v.data(), with_mask ? mask.data() : nullptr, N, 1e-3f, 0.9f, 0.95f,
                        1e-8f, 0.1f, t, 0.5f);
    DeviceVec<float> gp(p0), gg(g), gm(m0), gv(v0);
    DeviceVec<uint8_t> gmask(mask);
    for (int64_t t = 1; t <= 3; ++t)
      cuda::adamw_update(gp.p, gg.p, gm.p, gv.p, with_mask ? gmask.p : nullptr, N, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, t,
                         0.5f);
    st::expect_close(gp.host(), p, kEwAbs, kEwRel, "params");
    st::expect_close(gm.host(), m, kEwAbs, kEwRel, "m");
    st::expect_close(gv.host(), v, kEwAbs, kEwRel, "v");
  }
  for (int64_t n : {int64_t(0), int64_t(1), int64_t(65536), int64_t(3 * 65536 + 123)}) {
    const auto x = st::randn(static_cast<size_t>(n), 130);
    DeviceVec<float> gx(x);
    const double want = cpu::sum_squares(x.data(), n), got = cuda::sum_squares(gx.p, n);
    std::printf("cuda sum_squares n=%ld cpu=%.17g cuda=%.17g\n", long(n), want, got);
    EXPECT_NEAR(got, want, 1e-12 * (1 + want));
    EXPECT_EQ(cuda::sum_squares(gx.p, n), got);  // fixed-order reduction: reproducible
  }
}

}  // namespace
