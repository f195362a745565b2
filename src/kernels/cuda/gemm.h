#pragma once
// CUDA twin of kernels/cpu/gemm.h: same names, signatures and semantics; every pointer is a
// device pointer and the work is queued on the current stream (kernels/cuda/runtime.h).
// Dense matrix products through cuBLASLt, row-major like the CPU twin (cuBLAS is column-major: a
// row-major C = A B is computed as the column-major C^T = B^T A^T, with no copies).
#include <cstdint>

namespace strata::cuda {

// C[M,N] = alpha * op(A) @ op(B) + beta * C, op(X) = X or X^T; lda/ldb/ldc are row strides.
// K == 0 gives C = beta * C (0 where beta == 0), as BLAS. fp32 compute (CUBLAS_COMPUTE_32F) unless
// set_allow_tf32(true).
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// The same product with bf16 operands (raw bf16 bits, as DType::bf16 stores them) accumulated in
// fp32 into an fp32 C: the mixed-precision path of the issue (tensor cores on sm_80+).
void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
               int64_t lda, const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc);

// Let fp32 gemm round its inputs to TF32 on the tensor cores (~10 bits of mantissa; 3-8x faster on
// A100/H100). Off by default so that the CUDA twins match the CPU twins to fp32 tolerance.
void set_allow_tf32(bool allow);
bool allow_tf32();

// Linear layer with the PyTorch/Hugging Face weight layout.
// inp[N, IC], weight[OC, IC], bias[OC] or null -> out[N, OC] = inp @ weight^T + bias
// (the bias is fused into the GEMM epilogue where cuBLASLt offers one).
void linear_forward(float* out, const float* inp, const float* weight, const float* bias, int64_t N, int64_t IC,
                    int64_t OC);
// dinp[N, IC] = dout @ weight (assigned; skipped if null; accumulated instead when accumulate_dinp),
// dweight[OC, IC] += dout^T @ inp, dbias[OC] += sum_n dout (skipped if null; deterministic).
void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int64_t N, int64_t IC, int64_t OC, bool accumulate_dinp = false);

}  // namespace strata::cuda
