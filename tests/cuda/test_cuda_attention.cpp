// CUDA flash attention vs its CPU twin (kernels/cpu/attention.h): forward (out, lse) for head dims
// 64 / 128 and odd ones, GQA ratios 1 / 2 / 4, Tq == Tk at lengths that are not multiples of the
// tiles, Tq < Tk, decode over a strided cache long enough to take the split-K path, MLA shapes
// (hd_qk != hd_v, the latent cache with shared k/v rows); backward (dq, dk, dv) on the same shapes
// plus bitwise determinism; paged decode vs cpu::attention_decode_paged. Skips visibly without a
// device; the bf16 tensor-core forward against the CPU twin on the same bf16 inputs. fp32 tolerances: 2e-5 abs + 1e-4 rel on outputs, 2e-4 abs + 2e-4 rel on gradients (sums
// over up to T * G rows in a different order than the CPU's).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "core/device_cuda.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/rng.h"
#include "kernels/cpu/attention.h"
#include "kernels/cuda/attention.h"
#include "testing.h"

using namespace strata;
namespace st = strata::testing;

namespace {

#define SKIP_WITHOUT_DEVICE() \
  if (!cuda::device_available()) GTEST_SKIP() << cuda::unavailable_reason()

// A device copy of a host vector (or zeroed storage), freed on scope exit.
template <class T>
struct DevVec {
  T* p = nullptr;
  size_t n = 0;
  explicit DevVec(size_t n_) : p(static_cast<T*>(cuda::alloc(n_ * sizeof(T)))), n(n_) {
    cuda::memset_zero(p, n * sizeof(T));
  }
  explicit DevVec(const std::vector<T>& h) : DevVec(h.size()) { cuda::copy_to_device(p, h.data(), n * sizeof(T)); }
  DevVec(const DevVec&) = delete;
  DevVec& operator=(const DevVec&) = delete;
  ~DevVec() { cuda::free(p); }
  std::vector<T> host() const {
    std::vector<T> h(n);
    cuda::copy_to_host(h.data(), p, n * sizeof(T));
    return h;
  }
};

struct Case {
  int64_t B, Tq, Tk, Hq, Hkv, hk, hv;
  int64_t Tmax = 0;          // cache capacity (batch stride Tmax * tstride); 0 -> Tk
  bool shared_rows = false;  // MLA latent cache: v = the first hv channels of each k row, Hkv = 1
  float scale = 0.0f;        // 0 -> 1/sqrt(hk)
  int64_t window = 0;        // sliding window (fp32 forward and backward); 0 -> full causal
  int64_t cap() const { return Tmax ? Tmax : Tk; }
  int64_t k_ts() const { return Hkv * hk; }
  int64_t v_ts() const { return shared_rows ? k_ts() : Hkv * hv; }
  float sc() const { return scale > 0 ? scale : 1.0f / std::sqrt(float(hk)); }
};

void print_case(const char* what, const Case& c) {
  std::printf("cuda attention %s B=%ld Tq=%ld Tk=%ld Hq=%ld Hkv=%ld hd_qk=%ld hd_v=%ld Tmax=%ld shared=%d window=%ld\n",
              what, long(c.B), long(c.Tq), long(c.Tk), long(c.Hq), long(c.Hkv), long(c.hk), long(c.hv), long(c.cap()),
              int(c.shared_rows), long(c.window));
}

void check_forward(const Case& c, uint64_t seed) {
  print_case("forward", c);
  const auto q = st::randn(size_t(c.B * c.Tq * c.Hq * c.hk), seed);
  const auto k = st::randn(size_t(c.B * c.cap() * c.k_ts()), seed + 1);
  const auto v = c.shared_rows ? k : st::randn(size_t(c.B * c.cap() * c.v_ts()), seed + 2);
  const size_t nout = size_t(c.B * c.Tq * c.Hq * c.hv), nlse = size_t(c.B * c.Hq * c.Tq);
  std::vector<float> out(nout), lse(nlse);
  cpu::attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), c.B, c.Tq, c.Tk, c.Hq, c.Hkv, c.hk,
                         c.hv, c.sc(), c.cap() * c.k_ts(), c.k_ts(), c.cap() * c.v_ts(), c.v_ts(), c.window);

  DevVec<float> dq(q), dk(k), dvv(v), dout(nout), dlse(nlse);
  cuda::attention_forward(dout.p, dlse.p, dq.p, dk.p, c.shared_rows ? dk.p : dvv.p, c.B, c.Tq, c.Tk, c.Hq, c.Hkv,
                          c.hk, c.hv, c.sc(), c.cap() * c.k_ts(), c.k_ts(), c.cap() * c.v_ts(), c.v_ts(), c.window);
  st::expect_close(dout.host(), out, 2e-5, 1e-4, "out");
  st::expect_close(dlse.host(), lse, 2e-5, 1e-5, "lse");
  // lse is optional
  DevVec<float> dout2(nout);
  cuda::attention_forward(dout2.p, nullptr, dq.p, dk.p, c.shared_rows ? dk.p : dvv.p, c.B, c.Tq, c.Tk, c.Hq, c.Hkv,
                          c.hk, c.hv, c.sc(), c.cap() * c.k_ts(), c.k_ts(), c.cap() * c.v_ts(), c.v_ts(), c.window);
  st::expect_close(dout2.host(), out, 2e-5, 1e-4, "out (no lse)");
}

TEST(CudaAttention, ForwardHeadDims64And128) {
  SKIP_WITHOUT_DEVICE();
  for (int64_t hd : {64, 128})
    for (int64_t G : {1, 2, 4})
      for (int64_t T : {1, 37, 130}) check_forward({2, T, T, 8, 8 / G, hd, hd}, 11);
}

TEST(CudaAttention, ForwardGqaRatiosAndOddLengths) {
  SKIP_WITHOUT_DEVICE();
  check_forward({2, 100, 100, 8, 8, 64, 64}, 1);   // MHA
  check_forward({2, 100, 100, 8, 4, 64, 64}, 2);   // GQA 2
  check_forward({2, 100, 100, 8, 2, 128, 128}, 3); // GQA 4
  check_forward({1, 257, 257, 4, 1, 64, 64}, 4);   // MQA, one past four row tiles of rows
  check_forward({3, 65, 65, 2, 2, 32, 32}, 5);     // one past a key tile
  check_forward({2, 7, 300, 4, 2, 64, 64}, 6);     // Tq < Tk
  check_forward({1, 50, 50, 3, 1, 40, 24}, 7);     // odd head dims, hd_qk != hd_v
  check_forward({1, 33, 33, 2, 2, 16, 16}, 8);
}

TEST(CudaAttention, ForwardMlaShapes) {
  SKIP_WITHOUT_DEVICE();
  check_forward({2, 70, 70, 4, 4, 192, 128, 0, false, 0.125f}, 21);  // expanded MLA prefill
  Case latent{2, 1, 300, 16, 1, 576, 512, 320, true, 0.07f};          // absorbed decode, latent cache
  check_forward(latent, 22);
  check_forward({1, 3, 90, 8, 1, 576, 512, 100, true, 0.07f}, 23);   // a few latent queries
  check_forward({1, 20, 20, 2, 1, 288, 160}, 24);                    // > 128 output columns: two chunks
}

TEST(CudaAttention, DecodeFromCache) {
  SKIP_WITHOUT_DEVICE();
  // Tq = 1 over long caches: few blocks, so the keys are split and combined.
  for (int64_t hd : {64, 128})
    for (int64_t Hkv : {8, 4, 2}) check_forward({2, 1, 1000, 8, Hkv, hd, hd, 1100}, 31);
  check_forward({1, 1, 5000, 4, 1, 128, 128, 5000}, 32);
  check_forward({3, 1, 1, 4, 2, 64, 64, 16}, 33);     // a cache of one token
  check_forward({4, 1, 63, 32, 8, 64, 64, 200}, 34);  // many heads: no split
}

// bf16 tensor-core forward vs the CPU twin on the same bf16 inputs (P is rounded to bf16 for P V:
// out at 1e-2; lse from fp32 scores at 1e-4).
void check_forward_bf16(const Case& c, uint64_t seed) {
  print_case("forward bf16", c);
  auto bits = [](const std::vector<float>& x) {
    std::vector<uint16_t> h(x.size());
    for (size_t i = 0; i < x.size(); ++i) h[i] = f32_to_bf16(x[i]);
    return h;
  };
  const auto q = bits(st::randn(size_t(c.B * c.Tq * c.Hq * c.hk), seed));
  const auto k = bits(st::randn(size_t(c.B * c.cap() * c.k_ts()), seed + 1));
  const auto v = bits(st::randn(size_t(c.B * c.cap() * c.v_ts()), seed + 2));
  const size_t nout = size_t(c.B * c.Tq * c.Hq * c.hk), nlse = size_t(c.B * c.Hq * c.Tq);
  std::vector<float> out(nout), lse(nlse);
  cpu::attention_forward_bf16(out.data(), lse.data(), q.data(), k.data(), v.data(), c.B, c.Tq, c.Tk, c.Hq, c.Hkv,
                              c.hk, c.sc(), c.cap() * c.k_ts(), c.k_ts(), c.cap() * c.v_ts(), c.v_ts());
  DevVec<uint16_t> dq(q), dk(k), dv(v);
  DevVec<float> dout(nout), dlse(nlse);
  cuda::attention_forward_bf16(dout.p, dlse.p, dq.p, dk.p, dv.p, c.B, c.Tq, c.Tk, c.Hq, c.Hkv, c.hk, c.sc(),
                               c.cap() * c.k_ts(), c.k_ts(), c.cap() * c.v_ts(), c.v_ts());
  st::expect_close(dout.host(), out, 1e-2, 1e-2, "out (bf16)");
  st::expect_close(dlse.host(), lse, 1e-4, 1e-5, "lse (bf16)");
}

TEST(CudaAttention, ForwardBf16TensorCores) {
  SKIP_WITHOUT_DEVICE();
  for (int64_t hd : {64, 128})
    for (int64_t Hkv : {8, 4, 2}) {
      check_forward_bf16({2, 130, 130, 8, Hkv, hd, hd}, 71);
      check_forward_bf16({1, 1, 300, 8, Hkv, hd, hd, 320}, 72);  // decode shape
    }
  check_forward_bf16({1, 1000, 1000, 4, 1, 128, 128}, 73);
  check_forward_bf16({2, 37, 200, 4, 2, 64, 64}, 74);             // Tq < Tk
}

// Backward vs the CPU twin, and bitwise reproducibility.
void check_backward(const Case& c, uint64_t seed) {
  print_case("backward", c);
  const int64_t T = c.Tq;
  const auto q = st::randn(size_t(c.B * T * c.Hq * c.hk), seed);
  const auto k = st::randn(size_t(c.B * T * c.Hkv * c.hk), seed + 1);
  const auto v = st::randn(size_t(c.B * T * c.Hkv * c.hv), seed + 2);
  const auto go = st::randn(size_t(c.B * T * c.Hq * c.hv), seed + 3);
  std::vector<float> out(go.size()), lse(size_t(c.B * c.Hq * T));
  cpu::attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), c.B, T, T, c.Hq, c.Hkv, c.hk, c.hv,
                         c.sc(), T * c.Hkv * c.hk, c.Hkv * c.hk, T * c.Hkv * c.hv, c.Hkv * c.hv, c.window);
  std::vector<float> gq(q.size()), gk(k.size()), gv(v.size());
  cpu::attention_backward(gq.data(), gk.data(), gv.data(), go.data(), q.data(), k.data(), v.data(), out.data(),
                          lse.data(), c.B, T, c.Hq, c.Hkv, c.hk, c.hv, c.sc(), c.window);

  DevVec<float> dq_in(q), dk_in(k), dv_in(v), dgo(go), dout(out), dlse(lse);
  DevVec<float> dgq(q.size()), dgk(k.size()), dgv(v.size());
  cuda::attention_backward(dgq.p, dgk.p, dgv.p, dgo.p, dq_in.p, dk_in.p, dv_in.p, dout.p, dlse.p, c.B, T, c.Hq, c.Hkv,
                           c.hk, c.hv, c.sc(), c.window);
  const auto hq = dgq.host(), hk = dgk.host(), hv = dgv.host();
  st::expect_close(hq, gq, 2e-4, 2e-4, "dq");
  st::expect_close(hk, gk, 2e-4, 2e-4, "dk");
  st::expect_close(hv, gv, 2e-4, 2e-4, "dv");
  // The CUDA forward's out/lse feed the backward just as well (what a training step does).
  DevVec<float> fout(out.size()), flse(lse.size());
  cuda::attention_forward(fout.p, flse.p, dq_in.p, dk_in.p, dv_in.p, c.B, T, T, c.Hq, c.Hkv, c.hk, c.hv, c.sc(),
                          T * c.Hkv * c.hk, c.Hkv * c.hk, T * c.Hkv * c.hv, c.Hkv * c.hv, c.window);
  DevVec<float> dgq2(q.size()), dgk2(k.size()), dgv2(v.size());
  cuda::attention_backward(dgq2.p, dgk2.p, dgv2.p, dgo.p, dq_in.p, dk_in.p, dv_in.p, fout.p, flse.p, c.B, T, c.Hq,
                           c.Hkv, c.hk, c.hv, c.sc(), c.window);
  st::expect_close(dgq2.host(), gq, 2e-4, 2e-4, "dq (cuda forward)");
  st::expect_close(dgk2.host(), gk, 2e-4, 2e-4, "dk (cuda forward)");
  st::expect_close(dgv2.host(), gv, 2e-4, 2e-4, "dv (cuda forward)");
  // Deterministic: no atomics, so a second run is bitwise equal.
  cuda::attention_backward(dgq2.p, dgk2.p, dgv2.p, dgo.p, dq_in.p, dk_in.p, dv_in.p, dout.p, dlse.p, c.B, T, c.Hq,
                           c.Hkv, c.hk, c.hv, c.sc(), c.window);
  EXPECT_EQ(std::memcmp(dgq2.host().data(), hq.data(), hq.size() * sizeof(float)), 0) << "dq not reproducible";
  EXPECT_EQ(std::memcmp(dgk2.host().data(), hk.data(), hk.size() * sizeof(float)), 0) << "dk not reproducible";
  EXPECT_EQ(std::memcmp(dgv2.host().data(), hv.data(), hv.size() * sizeof(float)), 0) << "dv not reproducible";
}

TEST(CudaAttention, BackwardHeadDims64And128) {
  SKIP_WITHOUT_DEVICE();
  for (int64_t hd : {64, 128})
    for (int64_t Hkv : {4, 2, 1}) check_backward({2, 37, 37, 4, Hkv, hd, hd}, 41);
  check_backward({1, 130, 130, 8, 2, 64, 64}, 42);  // several row and key tiles
  check_backward({2, 1, 1, 4, 1, 64, 64}, 43);      // T = 1
}

TEST(CudaAttention, BackwardOddAndMlaDims) {
  SKIP_WITHOUT_DEVICE();
  check_backward({2, 45, 45, 6, 3, 40, 24}, 51);                       // odd dims, hd_qk != hd_v
  check_backward({1, 70, 70, 4, 4, 192, 128, 0, false, 0.125f}, 52);  // expanded MLA training
  check_backward({1, 33, 33, 2, 1, 256, 256}, 53);                     // the largest supported dims
  check_backward({2, 64, 64, 2, 2, 16, 16}, 54);                       // exact tile multiples
}

// Sliding window against the CPU twin: training/prefill shapes (row tiles whose first key is inside
// the sequence), decode over a long cache (split keys, the splits below the window empty), MLA dims.
TEST(CudaAttention, SlidingWindow) {
  SKIP_WITHOUT_DEVICE();
  auto win = [](Case c, int64_t w) {
    c.window = w;
    return c;
  };
  check_forward(win({2, 130, 130, 8, 2, 64, 64}, 5), 81);    // window far below a key tile
  check_forward(win({1, 257, 257, 4, 1, 64, 64}, 100), 82);  // window across key tiles, MQA
  check_forward(win({2, 100, 100, 8, 8, 32, 32}, 1), 83);    // window 1
  check_forward(win({2, 7, 300, 4, 2, 64, 64}, 40), 84);     // Tq < Tk
  check_forward(win({2, 1, 1000, 8, 2, 64, 64, 1100}, 70), 85);  // decode, split keys
  check_forward(win({1, 3, 90, 8, 1, 576, 512, 100, true, 0.07f}, 20), 86);  // latent (MLA) queries
  check_backward(win({2, 37, 37, 4, 2, 64, 64}, 6), 87);
  check_backward(win({1, 130, 130, 8, 2, 64, 64}, 50), 88);   // several row and key tiles
  check_backward(win({2, 45, 45, 6, 3, 40, 24}, 9), 89);      // odd dims
  check_backward(win({1, 200, 200, 2, 2, 16, 16}, 64), 90);   // window of one key tile of the backward
}

// Argument checks run on the host before anything touches the device, so this runs everywhere.
TEST(CudaAttention, RefusesBadArguments) {
  EXPECT_THROW(cuda::attention_backward(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                        nullptr, 1, 4, 1, 1, 576, 512, 0.1f),
               Error);  // head dims above 256
  EXPECT_THROW(cuda::attention_forward(nullptr, nullptr, nullptr, nullptr, nullptr, 1, 5, 4, 2, 1, 64, 64, 0.1f, 256,
                                       64, 256, 64),
               Error);  // Tq > Tk
  EXPECT_THROW(cuda::attention_forward(nullptr, nullptr, nullptr, nullptr, nullptr, 1, 4, 4, 3, 2, 64, 64, 0.1f, 512,
                                       128, 512, 128),
               Error);  // kv heads do not divide query heads
  EXPECT_THROW(cuda::attention_forward_bf16(nullptr, nullptr, nullptr, nullptr, nullptr, 1, 4, 4, 2, 2, 96, 0.1f, 768,
                                            192, 768, 192),
               Error);  // bf16 head dim other than 64 / 128
  EXPECT_THROW(cuda::attention_forward_bf16(nullptr, nullptr, nullptr, nullptr, nullptr, 1, 4, 4, 2, 2, 64, 0.1f,
                                            4 * 132, 132, 4 * 132, 132),
               Error);  // token stride not a multiple of 8
  EXPECT_THROW(cuda::attention_decode_paged(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 1, 2, 1, 64,
                                            64, 0.1f, 64, 64, 0, 4, 4),
               Error);  // block size 0
}

// Paged decode vs the CPU reference over the same pool and tables.
void check_paged(int64_t B, int64_t Hq, int64_t Hkv, int64_t hk, int64_t hv, int64_t block_size, int64_t max_blocks,
                 std::vector<int32_t> seq_lens, uint64_t seed, int64_t window = 0, bool split_keys = true) {
  std::printf("cuda paged decode B=%ld Hq=%ld Hkv=%ld hd_qk=%ld hd_v=%ld block=%ld max_blocks=%ld window=%ld\n",
              long(B), long(Hq), long(Hkv), long(hk), long(hv), long(block_size), long(max_blocks), long(window));
  const int64_t num_blocks = B * max_blocks + 2;
  const int64_t k_ts = Hkv * hk, v_ts = Hkv * hv;
  const auto kp = st::randn(size_t(num_blocks * block_size * k_ts), seed);
  const auto vp = st::randn(size_t(num_blocks * block_size * v_ts), seed + 1);
  const auto q = st::randn(size_t(B * Hq * hk), seed + 2);
  std::vector<int32_t> perm(num_blocks);
  std::iota(perm.begin(), perm.end(), 0);
  Rng r(seed + 3);
  for (int64_t i = num_blocks - 1; i > 0; --i) std::swap(perm[i], perm[r.below(uint64_t(i + 1))]);
  std::vector<int32_t> table(perm.begin(), perm.begin() + B * max_blocks);
  const float scale = 1.0f / std::sqrt(float(hk));
  std::vector<float> out(size_t(B * Hq * hv)), lse(size_t(B * Hq));
  cpu::attention_decode_paged(out.data(), lse.data(), q.data(), kp.data(), vp.data(), table.data(), seq_lens.data(), B,
                              Hq, Hkv, hk, hv, scale, k_ts, v_ts, block_size, max_blocks, num_blocks, window);
  DevVec<float> dk(kp), dv(vp), dq(q), dout(out.size()), dlse(lse.size());
  DevVec<int32_t> dtable(table), dlens(seq_lens);
  cuda::attention_decode_paged(dout.p, dlse.p, dq.p, dk.p, dv.p, dtable.p, dlens.p, B, Hq, Hkv, hk, hv, scale, k_ts,
                               v_ts, block_size, max_blocks, num_blocks, window, split_keys);
  st::expect_close(dout.host(), out, 2e-5, 1e-4, "paged out");
  const auto got_lse = dlse.host();
  for (size_t i = 0; i < lse.size(); ++i)
    if (std::isinf(lse[i]))
      EXPECT_TRUE(std::isinf(got_lse[i]) && got_lse[i] < 0) << "lse[" << i << "] = " << got_lse[i];
    else
      EXPECT_NEAR(got_lse[i], lse[i], 2e-5 + 1e-5 * std::abs(lse[i])) << "lse[" << i << "]";
}

TEST(CudaAttention, PagedDecode) {
  SKIP_WITHOUT_DEVICE();
  check_paged(3, 8, 2, 64, 64, 16, 40, {1, 333, 640}, 61);
  check_paged(2, 8, 8, 128, 128, 32, 64, {2048, 77}, 62);
  check_paged(2, 4, 1, 40, 24, 8, 10, {0, 79}, 63);  // an empty sequence, odd dims
}

// Sliding windows (the serving engine's windowed attention): against the CPU kernel's window,
// itself checked against attention_forward's window in tests/test_attention_paged.cpp.
TEST(CudaAttention, PagedDecodeSlidingWindow) {
  SKIP_WITHOUT_DEVICE();
  check_paged(3, 8, 2, 64, 64, 16, 40, {1, 333, 640}, 64, 100);   // inside and across key tiles / splits
  check_paged(2, 8, 8, 128, 128, 32, 64, {2048, 77}, 65, 1000);   // long cache, split keys
  check_paged(2, 4, 1, 40, 24, 8, 10, {0, 79}, 66, 7);            // window inside one tile, an empty sequence
}

// One pass over the keys per query (the serving engine's batch invariance): same results, and the
// same bits for a query whatever the batch around it.
TEST(CudaAttention, PagedDecodeWithoutKeySplits) {
  SKIP_WITHOUT_DEVICE();
  check_paged(1, 8, 2, 64, 64, 16, 64, {1000}, 67, 0, false);
  check_paged(3, 8, 2, 64, 64, 16, 40, {1, 333, 640}, 68, 100, false);
}

}  // namespace
