// Causal flash attention on CUDA, fp32: the host side (argument checks, planning, launches). The
// kernels and their design notes are in attention_kernels.cuh; the contract is attention.h.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "core/error.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/runtime.h"
// after runtime.h: the kernels use the CUDA builtins it brings
#include "kernels/cuda/attention_kernels.cuh"

namespace strata::cuda {
namespace {

using namespace flash;

int num_sms() {
  int dev = 0, sms = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  return sms;
}

// Launches kernel(p) on (grid, kThreads, smem); above 48 KiB of shared memory a kernel must opt in
// (per device, so on every launch: a cheap host call).
template <class Kernel, class Params>
void launch(Kernel kernel, Grid grid, size_t smem, cudaStream_t stream, const Params& p) {
  if (smem > 48 * 1024)
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  STRATA_LAUNCH((dim3(grid.x, grid.y, grid.z), kThreads, smem, stream), kernel)(p);
  CUDA_CHECK_LAUNCH();
}

// Plans, runs the forward kernel and, when the keys were split, the combine kernel.
template <bool kPaged>
void run_forward(FwdParams p, int Tk_cap) {
  cudaStream_t stream = current_stream();
  const FwdPlan plan = plan_forward(p, Tk_cap, num_sms());
  STRATA_CHECK(p.B * int64_t(p.Hkv) <= 65535 && int64_t(p.n_dvc) * p.nsplit <= 65535,
               "attention (cuda): grid too large (B*Hkv = {}, splits x chunks = {})", p.B * int64_t(p.Hkv),
               p.n_dvc * p.nsplit);
  if (p.nsplit == 1) return dispatch_forward<kPaged>(plan, [&](auto k) { launch(k, plan.grid, plan.smem, stream, p); });
  DeviceBuffer scratch(split_scratch_floats(p, plan) * sizeof(float), stream);
  p.o_part = static_cast<float*>(scratch.data());
  p.lse_part = p.o_part + int64_t(p.nsplit) * plan.rows * p.dv;
  dispatch_forward<kPaged>(plan, [&](auto k) { launch(k, plan.grid, plan.smem, stream, p); });
  STRATA_LAUNCH((ceil_div(plan.rows, kThreads / 32), kThreads, 0, stream), combine_splits_kernel)(
      p.out, p.lse, p.o_part, p.lse_part, p.B, p.Tq, p.Hq, p.dv, p.nsplit);
  CUDA_CHECK_LAUNCH();
}

void check_shapes(const char* what, int64_t B, int64_t Tq, int64_t Tk, int64_t Hq, int64_t Hkv, int64_t hd_qk,
                  int64_t hd_v, float scale) {
  STRATA_CHECK(B >= 0 && Tq >= 0 && Tk >= Tq, "{}: need 0 <= Tq <= Tk (B={}, Tq={}, Tk={})", what, B, Tq, Tk);
  STRATA_CHECK(Hq > 0 && Hkv > 0 && Hq % Hkv == 0, "{}: kv heads ({}) must divide query heads ({})", what, Hkv, Hq);
  STRATA_CHECK(hd_qk > 0 && hd_v > 0, "{}: head dims must be positive (got qk {}, v {})", what, hd_qk, hd_v);
  STRATA_CHECK(std::isfinite(scale) && scale > 0, "{}: softmax scale must be positive and finite (got {})", what,
               scale);
  STRATA_CHECK(Tk < (int64_t(1) << 31) && B * Tq * Hq < (int64_t(1) << 31),
               "{}: sizes beyond 32-bit row counts (B={}, Tq={}, Tk={}, Hq={})", what, B, Tq, Tk, Hq);
}

}  // namespace

void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, int64_t B,
                       int64_t Tq, int64_t Tk, int64_t Hq, int64_t Hkv, int64_t hd_qk, int64_t hd_v, float scale,
                       int64_t k_bstride, int64_t k_tstride, int64_t v_bstride, int64_t v_tstride, int64_t window) {
  check_shapes("attention_forward", B, Tq, Tk, Hq, Hkv, hd_qk, hd_v, scale);
  STRATA_CHECK(window >= 0, "attention_forward: window must be >= 0 (0 = full causal; got {})", window);
  STRATA_CHECK(k_tstride >= Hkv * hd_qk && v_tstride >= Hkv * hd_v,
               "attention_forward: token strides k {} / v {} below Hkv*hd_qk = {} / Hkv*hd_v = {}", k_tstride,
               v_tstride, Hkv * hd_qk, Hkv * hd_v);
  STRATA_CHECK(B <= 1 || (k_bstride >= Tk * k_tstride && v_bstride >= Tk * v_tstride),
               "attention_forward: batch strides k {} / v {} below Tk*tstride = {} / {}", k_bstride, v_bstride,
               Tk * k_tstride, Tk * v_tstride);
  if (B == 0 || Tq == 0) return;
  FwdParams p{};
  p.q = q, p.k = k, p.v = v, p.out = out, p.lse = lse;
  p.k_bstride = k_bstride, p.k_tstride = k_tstride, p.v_bstride = v_bstride, p.v_tstride = v_tstride;
  p.B = int(B), p.Tq = int(Tq), p.Tk = int(Tk), p.Hq = int(Hq), p.Hkv = int(Hkv), p.G = int(Hq / Hkv);
  p.dqk = int(hd_qk), p.dv = int(hd_v);
  p.window = int(std::min<int64_t>(window, Tk));  // a window of Tk or more is full causal
  p.scale_log2 = scale * kLog2e;
  run_forward<false>(p, int(Tk));
}

void attention_forward_bf16(float* out, float* lse, const uint16_t* q, const uint16_t* k, const uint16_t* v,
                            int64_t B, int64_t Tq, int64_t Tk, int64_t Hq, int64_t Hkv, int64_t hd, float scale,
                            int64_t k_bstride, int64_t k_tstride, int64_t v_bstride, int64_t v_tstride) {
  check_shapes("attention_forward_bf16", B, Tq, Tk, Hq, Hkv, hd, hd, scale);
  STRATA_CHECK(hd == 64 || hd == 128, "attention_forward_bf16 (cuda): head dim must be 64 or 128 (got {})", hd);
  STRATA_CHECK(k_tstride >= Hkv * hd && v_tstride >= Hkv * hd,
               "attention_forward_bf16: token strides k {} / v {} below Hkv*hd = {}", k_tstride, v_tstride, Hkv * hd);
  STRATA_CHECK(B <= 1 || (k_bstride >= Tk * k_tstride && v_bstride >= Tk * v_tstride),
               "attention_forward_bf16: batch strides k {} / v {} below Tk*tstride = {} / {}", k_bstride, v_bstride,
               Tk * k_tstride, Tk * v_tstride);
  auto aligned = [](const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; };
  STRATA_CHECK(k_bstride % 8 == 0 && k_tstride % 8 == 0 && v_bstride % 8 == 0 && v_tstride % 8 == 0 && aligned(q) &&
                   aligned(k) && aligned(v),
               "attention_forward_bf16 (cuda): strides (k {} {}, v {} {}) must be multiples of 8 elements and q, k, v "
               "16-byte aligned",
               k_bstride, k_tstride, v_bstride, v_tstride);
  STRATA_CHECK(B * Hkv <= 65535, "attention_forward_bf16 (cuda): B*Hkv = {} exceeds the grid", B * Hkv);
  if (B == 0 || Tq == 0) return;
  FwdBf16Params p{};
  p.q = q, p.k = k, p.v = v, p.out = out, p.lse = lse;
  p.k_bstride = k_bstride, p.k_tstride = k_tstride, p.v_bstride = v_bstride, p.v_tstride = v_tstride;
  p.B = int(B), p.Tq = int(Tq), p.Tk = int(Tk), p.Hq = int(Hq), p.Hkv = int(Hkv), p.G = int(Hq / Hkv);
  p.scale_log2 = scale * kLog2e;
  cudaStream_t stream = current_stream();
  const Grid grid = plan_forward_bf16(p);
  dispatch_forward_bf16(int(hd), [&](auto kernel, size_t smem) { launch(kernel, grid, smem, stream, p); });
}

void attention_decode_paged(float* out, float* lse, const float* q, const float* k_cache, const float* v_cache,
                            const int32_t* block_table, const int32_t* seq_lens, int64_t B, int64_t Hq, int64_t Hkv,
                            int64_t hd_qk, int64_t hd_v, float scale, int64_t k_tstride, int64_t v_tstride,
                            int64_t block_size, int64_t max_blocks, int64_t num_blocks, int64_t window,
                            bool split_keys) {
  check_shapes("attention_decode_paged", B, 1, 1, Hq, Hkv, hd_qk, hd_v, scale);
  STRATA_CHECK(window >= 0, "attention_decode_paged: window must be >= 0 (0 = full causal; got {})", window);
  STRATA_CHECK(block_size > 0 && max_blocks > 0 && num_blocks > 0,
               "attention_decode_paged: block_size ({}), max_blocks ({}), num_blocks ({}) must be positive",
               block_size, max_blocks, num_blocks);
  STRATA_CHECK(k_tstride >= Hkv * hd_qk && v_tstride >= Hkv * hd_v,
               "attention_decode_paged: slot strides k {} / v {} below Hkv*hd_qk = {} / Hkv*hd_v = {}", k_tstride,
               v_tstride, Hkv * hd_qk, Hkv * hd_v);
  STRATA_CHECK(max_blocks * block_size < (int64_t(1) << 31) && num_blocks * block_size < (int64_t(1) << 40),
               "attention_decode_paged: capacity too large");
  if (B == 0) return;
  FwdParams p{};
  p.q = q, p.k = k_cache, p.v = v_cache, p.out = out, p.lse = lse;
  p.k_tstride = k_tstride, p.v_tstride = v_tstride;
  p.block_table = block_table, p.seq_lens = seq_lens;
  p.max_blocks = int(max_blocks), p.block_size = int(block_size), p.num_blocks = int(num_blocks);
  p.B = int(B), p.Tq = 1, p.Tk = 0, p.Hq = int(Hq), p.Hkv = int(Hkv), p.G = int(Hq / Hkv);
  p.dqk = int(hd_qk), p.dv = int(hd_v);
  // The forward kernel's window logic is per row position (seq_len - 1 here); a window of the whole
  // capacity or more is full causal.
  p.window = int(std::min<int64_t>(window, max_blocks * block_size));
  p.no_split = !split_keys;
  p.scale_log2 = scale * kLog2e;
  run_forward<true>(p, int(max_blocks * block_size));
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, int64_t B, int64_t T, int64_t Hq,
                        int64_t Hkv, int64_t hd_qk, int64_t hd_v, float scale, int64_t window) {
  check_shapes("attention_backward", B, T, T, Hq, Hkv, hd_qk, hd_v, scale);
  STRATA_CHECK(window >= 0, "attention_backward: window must be >= 0 (0 = full causal; got {})", window);
  STRATA_CHECK(hd_qk <= 256 && hd_v <= 256,
               "attention_backward (cuda): head dims up to 256 (got qk {}, v {}): the tiles stay in shared memory",
               hd_qk, hd_v);
  STRATA_CHECK(B * Hkv <= 65535, "attention_backward (cuda): B*Hkv = {} exceeds the grid", B * Hkv);
  if (B == 0 || T == 0) return;
  cudaStream_t stream = current_stream();
  BwdParams p{};
  p.q = q, p.k = k, p.v = v, p.dout = dout, p.lse = lse, p.dq = dq, p.dk = dk, p.dv = dv;
  p.B = int(B), p.T = int(T), p.Hq = int(Hq), p.Hkv = int(Hkv), p.G = int(Hq / Hkv);
  p.dqk = int(hd_qk), p.dv_dim = int(hd_v);
  p.window = int(std::min<int64_t>(window, T));  // a window of T or more is full causal
  p.scale = scale, p.scale_log2 = scale * kLog2e;
  const BwdPlan plan = plan_backward(p);

  const int64_t rows = B * T * Hq;
  DeviceBuffer D(size_t(rows) * sizeof(float), stream);
  p.D = static_cast<float*>(D.data());
  STRATA_LAUNCH((ceil_div(rows, kThreads / 32), kThreads, 0, stream), attn_bwd_dot_do_o_kernel)(
      static_cast<float*>(D.data()), dout, out, p.B, p.T, p.Hq, p.dv_dim);
  CUDA_CHECK_LAUNCH();
  dispatch_dkdv(plan, [&](auto kernel) { launch(kernel, plan.grid_kv, plan.smem, stream, p); });
  dispatch_dq(plan, [&](auto kernel) { launch(kernel, plan.grid_q, plan.smem, stream, p); });
}

}  // namespace strata::cuda
