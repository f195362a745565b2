// The CUDA flash-attention kernels (kernels/cuda/attention_kernels.cuh), run on the CPU through
// tests/cuda_emulation.h, against the CPU twin: every kernel variant (16- and 64-row tiles, 32 / 64
// / 128 output columns and several column chunks, resident and staged Q, key splits + combine,
// paged keys, the backward's dK/dV and dQ kernels with their column chunks) and the bf16 WMMA
// forward (the emulator models WMMA tiles; see tests/cuda_emulation.h). This runs in every
// build, GPU or not; tests/cuda/test_cuda_attention.cpp runs the same kernels on a real device.
// Planning and dispatch are the ones attention.cu uses; only the launch differs.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <vector>

#include "core/dtype.h"
#include "core/rng.h"
#include "kernels/cpu/attention.h"
#include "testing.h"
// Last: the emulator defines CUDA's keywords as macros.
#include "cuda_emulation.h"
#include "kernels/cuda/attention_kernels.cuh"

using namespace strata;
using namespace strata::cuda::flash;
namespace st = strata::testing;

namespace {

dim3 to_dim3(Grid g) { return dim3{g.x, g.y, g.z}; }

struct Case {
  int64_t B, Tq, Tk, Hq, Hkv, hk, hv;
  int64_t Tmax = 0;          // cache capacity; 0 -> Tk
  bool shared_rows = false;  // v = the first hv channels of each k row (MLA's latent cache)
  int64_t cap() const { return Tmax ? Tmax : Tk; }
  int64_t k_ts() const { return Hkv * hk; }
  int64_t v_ts() const { return shared_rows ? k_ts() : Hkv * hv; }
  float scale() const { return 0.9f / std::sqrt(float(hk)); }
};

// Runs forward exactly as attention.cu's run_forward does, with the emulator as the launcher;
// num_sms steers the key splits (1: none for any grid of 2+ blocks, 1000: as many as allowed).
void emulated_forward(FwdParams p, int Tk_cap, int num_sms, bool paged, int* nsplit_out) {
  const FwdPlan plan = plan_forward(p, Tk_cap, num_sms);
  std::vector<float> scratch;
  if (p.nsplit > 1) {
    scratch.assign(split_scratch_floats(p, plan), NAN);  // NaN: anything left unwritten shows
    p.o_part = scratch.data();
    p.lse_part = p.o_part + int64_t(p.nsplit) * plan.rows * p.dv;
  }
  auto launch = [&](auto kernel) { strata_emu::launch(to_dim3(plan.grid), kThreads, plan.smem, kernel, p); };
  if (paged)
    dispatch_forward<true>(plan, launch);
  else
    dispatch_forward<false>(plan, launch);
  if (p.nsplit > 1)
    strata_emu::launch(dim3{unsigned(ceil_div(plan.rows, kThreads / 32)), 1, 1}, kThreads, 0, combine_splits_kernel,
                       p.out, p.lse, static_cast<const float*>(p.o_part), static_cast<const float*>(p.lse_part), p.B,
                       p.Tq, p.Hq, p.dv, p.nsplit);
  *nsplit_out = p.nsplit;
}

void check_forward(const Case& c, int num_sms, uint64_t seed) {
  const auto q = st::randn(size_t(c.B * c.Tq * c.Hq * c.hk), seed);
  const auto k = st::randn(size_t(c.B * c.cap() * c.k_ts()), seed + 1);
  const auto v = c.shared_rows ? k : st::randn(size_t(c.B * c.cap() * c.v_ts()), seed + 2);
  const size_t nout = size_t(c.B * c.Tq * c.Hq * c.hv), nlse = size_t(c.B * c.Hq * c.Tq);
  std::vector<float> want(nout), want_lse(nlse);
  cpu::attention_forward(want.data(), want_lse.data(), q.data(), k.data(), v.data(), c.B, c.Tq, c.Tk, c.Hq, c.Hkv,
                         c.hk, c.hv, c.scale(), c.cap() * c.k_ts(), c.k_ts(), c.cap() * c.v_ts(), c.v_ts());
  std::vector<float> out(nout, NAN), lse(nlse, NAN);
  FwdParams p{};
  p.q = q.data(), p.k = k.data(), p.v = v.data(), p.out = out.data(), p.lse = lse.data();
  p.k_bstride = c.cap() * c.k_ts(), p.k_tstride = c.k_ts(), p.v_bstride = c.cap() * c.v_ts(), p.v_tstride = c.v_ts();
  p.B = int(c.B), p.Tq = int(c.Tq), p.Tk = int(c.Tk), p.Hq = int(c.Hq), p.Hkv = int(c.Hkv), p.G = int(c.Hq / c.Hkv);
  p.dqk = int(c.hk), p.dv = int(c.hv), p.scale_log2 = c.scale() * kLog2e;
  int nsplit = 0;
  emulated_forward(p, int(c.Tk), num_sms, false, &nsplit);
  std::printf("emulated forward B=%ld Tq=%ld Tk=%ld Hq=%ld Hkv=%ld hd_qk=%ld hd_v=%ld shared=%d: %d split(s)\n",
              long(c.B), long(c.Tq), long(c.Tk), long(c.Hq), long(c.Hkv), long(c.hk), long(c.hv), int(c.shared_rows),
              nsplit);
  st::expect_close(out, want, 2e-5, 1e-4, "out");
  st::expect_close(lse, want_lse, 2e-5, 1e-5, "lse");
}

TEST(CudaAttentionEmulated, ForwardTiles) {
  check_forward({2, 70, 70, 4, 2, 32, 32}, 1, 1);     // 64-row tiles, GQA 2, 32 columns, 2 key tiles
  check_forward({1, 1, 1, 2, 2, 64, 64}, 1, 2);       // T = 1
  check_forward({1, 37, 37, 2, 1, 64, 64}, 1, 3);     // MQA, 64 columns
  check_forward({1, 9, 9, 1, 1, 128, 128}, 1, 4);     // 16-row tiles (9 rows), 128 columns, resident Q of 4 chunks
  check_forward({1, 5, 150, 2, 1, 40, 24}, 1, 5);     // Tq < Tk, odd head dims
  check_forward({1, 20, 20, 2, 1, 160, 144}, 1, 6);   // staged Q (hd_qk > 128), two output chunks
  check_forward({2, 3, 40, 2, 1, 36, 20, 50}, 1, 7);  // strided cache (capacity 50)
}

TEST(CudaAttentionEmulated, ForwardSplitKeys) {
  check_forward({1, 1, 300, 4, 2, 64, 64, 320}, 1000, 11);    // decode: keys split over blocks, combined
  check_forward({2, 1, 200, 8, 2, 32, 48, 210}, 1000, 12);    // the last split ends in a partial tile
  check_forward({1, 70, 200, 2, 2, 32, 32}, 1000, 13);        // causal rows with empty splits
  check_forward({1, 1, 300, 8, 1, 200, 160, 310, true}, 1000, 14);  // latent-style shared k/v rows
  check_forward({1, 1, 4300, 2, 1, 32, 32}, 1000, 15);        // more splits than a warp has lanes
  check_forward({1, 1, 300, 32, 1, 72, 64, 310, true}, 1000, 16);  // absorbed MLA decode: 32 heads on one latent
}

TEST(CudaAttentionEmulated, PagedDecode) {
  const int64_t B = 3, Hq = 4, Hkv = 2, hk = 32, hv = 24, bs = 16, max_blocks = 16, num_blocks = 53;
  const std::vector<int32_t> lens{0, 37, 250};
  const float scale = 0.2f;
  const auto kp = st::randn(size_t(num_blocks * bs * Hkv * hk), 21);
  const auto vp = st::randn(size_t(num_blocks * bs * Hkv * hv), 22);
  const auto q = st::randn(size_t(B * Hq * hk), 23);
  std::vector<int32_t> table(size_t(B * max_blocks));
  for (size_t i = 0; i < table.size(); ++i) table[i] = int32_t((i * 7 + 3) % num_blocks);  // scattered, distinct (7 and 53 coprime)
  std::vector<float> want(size_t(B * Hq * hv)), want_lse(size_t(B * Hq));
  cpu::attention_decode_paged(want.data(), want_lse.data(), q.data(), kp.data(), vp.data(), table.data(), lens.data(),
                              B, Hq, Hkv, hk, hv, scale, Hkv * hk, Hkv * hv, bs, max_blocks, num_blocks);
  for (int sms : {1, 1000}) {
    std::vector<float> out(want.size(), NAN), lse(want_lse.size(), NAN);
    FwdParams p{};
    p.q = q.data(), p.k = kp.data(), p.v = vp.data(), p.out = out.data(), p.lse = lse.data();
    p.k_tstride = Hkv * hk, p.v_tstride = Hkv * hv;
    p.block_table = table.data(), p.seq_lens = lens.data();
    p.max_blocks = int(max_blocks), p.block_size = int(bs), p.num_blocks = int(num_blocks);
    p.B = int(B), p.Tq = 1, p.Hq = int(Hq), p.Hkv = int(Hkv), p.G = int(Hq / Hkv), p.dqk = int(hk), p.dv = int(hv);
    p.scale_log2 = scale * kLog2e;
    int nsplit = 0;
    emulated_forward(p, int(max_blocks * bs), sms, true, &nsplit);
    std::printf("emulated paged decode: %d split(s)\n", nsplit);
    st::expect_close(out, want, 2e-5, 1e-4, "paged out");
    for (size_t i = 0; i < lse.size(); ++i)
      if (std::isinf(want_lse[i]))
        EXPECT_TRUE(std::isinf(lse[i]) && lse[i] < 0) << "lse[" << i << "] = " << lse[i];
      else
        EXPECT_NEAR(lse[i], want_lse[i], 2e-5 + 1e-5 * std::abs(want_lse[i])) << "lse[" << i << "]";
  }
}

void check_backward(const Case& c, uint64_t seed) {
  const int64_t T = c.Tq;
  const auto q = st::randn(size_t(c.B * T * c.Hq * c.hk), seed);
  const auto k = st::randn(size_t(c.B * T * c.Hkv * c.hk), seed + 1);
  const auto v = st::randn(size_t(c.B * T * c.Hkv * c.hv), seed + 2);
  const auto go = st::randn(size_t(c.B * T * c.Hq * c.hv), seed + 3);
  std::vector<float> out(go.size()), lse(size_t(c.B * c.Hq * T));
  cpu::attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), c.B, T, T, c.Hq, c.Hkv, c.hk, c.hv,
                         c.scale(), T * c.Hkv * c.hk, c.Hkv * c.hk, T * c.Hkv * c.hv, c.Hkv * c.hv);
  std::vector<float> gq(q.size()), gk(k.size()), gv(v.size());
  cpu::attention_backward(gq.data(), gk.data(), gv.data(), go.data(), q.data(), k.data(), v.data(), out.data(),
                          lse.data(), c.B, T, c.Hq, c.Hkv, c.hk, c.hv, c.scale());

  std::vector<float> dq(q.size(), NAN), dk(k.size(), NAN), dv(v.size(), NAN), D(lse.size(), NAN);
  BwdParams p{};
  p.q = q.data(), p.k = k.data(), p.v = v.data(), p.dout = go.data(), p.lse = lse.data(), p.D = D.data();
  p.dq = dq.data(), p.dk = dk.data(), p.dv = dv.data();
  p.B = int(c.B), p.T = int(T), p.Hq = int(c.Hq), p.Hkv = int(c.Hkv), p.G = int(c.Hq / c.Hkv);
  p.dqk = int(c.hk), p.dv_dim = int(c.hv), p.scale = c.scale(), p.scale_log2 = c.scale() * kLog2e;
  const BwdPlan plan = plan_backward(p);
  std::printf("emulated backward B=%ld T=%ld Hq=%ld Hkv=%ld hd_qk=%ld hd_v=%ld: KC=%d VC=%d, %u + %u chunks\n",
              long(c.B), long(T), long(c.Hq), long(c.Hkv), long(c.hk), long(c.hv), plan.KC, plan.VC, plan.grid_kv.z,
              plan.grid_q.z);
  const int64_t rows = c.B * T * c.Hq;
  strata_emu::launch(dim3{unsigned(ceil_div(rows, kThreads / 32)), 1, 1}, kThreads, 0, attn_bwd_dot_do_o_kernel,
                     D.data(), go.data(), static_cast<const float*>(out.data()), p.B, p.T, p.Hq, p.dv_dim);
  dispatch_dkdv(plan, [&](auto kernel) { strata_emu::launch(to_dim3(plan.grid_kv), kThreads, plan.smem, kernel, p); });
  dispatch_dq(plan, [&](auto kernel) { strata_emu::launch(to_dim3(plan.grid_q), kThreads, plan.smem, kernel, p); });
  st::expect_close(dq, gq, 2e-4, 2e-4, "dq");
  st::expect_close(dk, gk, 2e-4, 2e-4, "dk");
  st::expect_close(dv, gv, 2e-4, 2e-4, "dv");
}

TEST(CudaAttentionEmulated, Backward) {
  check_backward({1, 40, 40, 4, 2, 32, 32}, 31);     // GQA 2, two key tiles, rows crossing tiles
  check_backward({2, 33, 33, 2, 1, 64, 64}, 32);     // MQA, one past a tile
  check_backward({1, 21, 21, 3, 3, 40, 24}, 33);     // odd dims
  check_backward({1, 35, 35, 2, 2, 160, 96}, 34);    // two dK column chunks, one dV chunk
  check_backward({1, 1, 1, 2, 1, 16, 16}, 35);       // T = 1
}

// bf16 tensor-core forward vs the CPU twin on the same bf16 inputs. The kernel rounds P to bf16
// for P V (relative error 2^-9), so out is compared at 1e-2; lse comes from fp32 scores.
void check_forward_bf16(const Case& c, uint64_t seed) {
  auto bits = [](const std::vector<float>& x) {
    std::vector<uint16_t> h(x.size());
    for (size_t i = 0; i < x.size(); ++i) h[i] = f32_to_bf16(x[i]);
    return h;
  };
  const auto q = bits(st::randn(size_t(c.B * c.Tq * c.Hq * c.hk), seed));
  const auto k = bits(st::randn(size_t(c.B * c.cap() * c.k_ts()), seed + 1));
  const auto v = bits(st::randn(size_t(c.B * c.cap() * c.v_ts()), seed + 2));
  const size_t nout = size_t(c.B * c.Tq * c.Hq * c.hk), nlse = size_t(c.B * c.Hq * c.Tq);
  std::vector<float> want(nout), want_lse(nlse), out(nout, NAN), lse(nlse, NAN);
  cpu::attention_forward_bf16(want.data(), want_lse.data(), q.data(), k.data(), v.data(), c.B, c.Tq, c.Tk, c.Hq,
                              c.Hkv, c.hk, c.scale(), c.cap() * c.k_ts(), c.k_ts(), c.cap() * c.v_ts(), c.v_ts());
  FwdBf16Params p{};
  p.q = q.data(), p.k = k.data(), p.v = v.data(), p.out = out.data(), p.lse = lse.data();
  p.k_bstride = c.cap() * c.k_ts(), p.k_tstride = c.k_ts(), p.v_bstride = c.cap() * c.v_ts(), p.v_tstride = c.v_ts();
  p.B = int(c.B), p.Tq = int(c.Tq), p.Tk = int(c.Tk), p.Hq = int(c.Hq), p.Hkv = int(c.Hkv), p.G = int(c.Hq / c.Hkv);
  p.scale_log2 = c.scale() * kLog2e;
  const Grid grid = plan_forward_bf16(p);
  dispatch_forward_bf16(int(c.hk), [&](auto kernel, size_t smem) {
    strata_emu::launch(to_dim3(grid), kThreads, smem, kernel, p);
  });
  std::printf("emulated bf16 forward B=%ld Tq=%ld Tk=%ld Hq=%ld Hkv=%ld hd=%ld\n", long(c.B), long(c.Tq), long(c.Tk),
              long(c.Hq), long(c.Hkv), long(c.hk));
  st::expect_close(out, want, 1e-2, 1e-2, "out (bf16)");
  st::expect_close(lse, want_lse, 1e-4, 1e-5, "lse (bf16)");
}

TEST(CudaAttentionEmulated, ForwardBf16TensorCores) {
  check_forward_bf16({2, 70, 70, 4, 2, 64, 64}, 41);       // GQA 2, rows and keys past a tile
  check_forward_bf16({1, 33, 100, 2, 1, 128, 128}, 42);    // Tq < Tk, MQA, hd 128
  check_forward_bf16({2, 1, 90, 2, 2, 64, 64, 96}, 43);    // decode from a strided cache
}

}  // namespace
