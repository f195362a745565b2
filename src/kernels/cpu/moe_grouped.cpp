// Grouped linear over experts (kernels/cpu/moe.h): on the CPU one cpu::gemm per expert over its
// contiguous rows is already the efficient form (oneDNN threads each product), so this twin is the
// reference the CUDA grouped kernel is checked against.
#include "core/error.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/moe.h"

namespace strata::cpu {
namespace {

// Expert e's rows [r0, r0 + n), checked against the buffer.
void expert_rows(const int32_t* offsets, int64_t e, int64_t rows, int64_t& r0, int64_t& n, const char* op) {
  r0 = offsets[e];
  n = int64_t(offsets[e + 1]) - r0;
  STRATA_CHECK(r0 >= 0 && n >= 0 && r0 + n <= rows, "{}: expert {} owns rows [{}, {}) outside the {} rows", op, e, r0,
               r0 + n, rows);
}

}  // namespace

// out_e[n_e, OC] = inp_e[n_e, IC] @ W_e^T
void moe_grouped_linear_forward(float* out, const float* inp, const float* w, int64_t w_stride,
                                const int32_t* offsets, int64_t rows, int64_t E, int64_t IC, int64_t OC) {
  for (int64_t e = 0; e < E; ++e) {
    int64_t r0, n;
    expert_rows(offsets, e, rows, r0, n, "moe_grouped_linear_forward");
    if (n == 0) continue;
    gemm(false, true, n, OC, IC, 1.0f, inp + r0 * IC, IC, w + e * w_stride, IC, 0.0f, out + r0 * OC, OC);
  }
}

// dinp_e = dout_e @ W_e (assigned / accumulated), dW_e += dout_e^T @ inp_e
void moe_grouped_linear_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w,
                                 int64_t w_stride, const int32_t* offsets, int64_t rows, int64_t E, int64_t IC,
                                 int64_t OC, bool accumulate_dinp) {
  for (int64_t e = 0; e < E; ++e) {
    int64_t r0, n;
    expert_rows(offsets, e, rows, r0, n, "moe_grouped_linear_backward");
    if (n == 0) continue;
    const float* g = dout + r0 * OC;
    if (dinp)
      gemm(false, false, n, IC, OC, 1.0f, g, OC, w + e * w_stride, IC, accumulate_dinp ? 1.0f : 0.0f, dinp + r0 * IC,
           IC);
    if (dw) gemm(true, false, OC, IC, n, 1.0f, g, OC, inp + r0 * IC, IC, 1.0f, dw + e * w_stride, IC);
  }
}

}  // namespace strata::cpu
