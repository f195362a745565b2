#pragma once
// Dense matrix products, row-major fp32. The backend (oneDNN sgemm, which dispatches on the CPU's
// ISA at run time) was chosen by bench/gemm_backends; see docs/kernels.md.
#include <cstdint>

namespace strata::cpu {

// C[M,N] = alpha * op(A) @ op(B) + beta * C, op(X) = X or X^T; lda/ldb/ldc are row strides.
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// The same product with bf16 operands (raw bf16 bits) and an fp32 C, accumulated in fp32: oneDNN's
// matmul on CPUs with AMX / AVX512-BF16 (which read bf16 subnormal operands as zero), otherwise the
// operands widened to fp32 exactly, then gemm. The CPU twin of the CUDA mixed-precision path.
void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
               int64_t lda, const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc);

// Linear layer with the PyTorch/Hugging Face weight layout.
// inp[N, IC], weight[OC, IC], bias[OC] or null -> out[N, OC] = inp @ weight^T + bias
void linear_forward(float* out, const float* inp, const float* weight, const float* bias, int64_t N, int64_t IC,
                    int64_t OC);
// dinp[N, IC] = dout @ weight (assigned; skipped if null; accumulated instead when accumulate_dinp),
// dweight[OC, IC] += dout^T @ inp, dbias[OC] += sum_n dout (skipped if null).
void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int64_t N, int64_t IC, int64_t OC, bool accumulate_dinp = false);

}  // namespace strata::cpu
