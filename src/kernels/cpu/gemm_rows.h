#pragma once
// A row-invariant fp32 linear product for the serving engine's batch invariance (Ctx::row_tile):
// every output element is one dot product computed in a fixed order (vector lanes of partial sums
// along K, a masked tail, one fixed lane reduction, then the bias), whatever M is, wherever the row
// sits in the batch and however many threads run. So a request's logits do not depend on what else
// shares the step, with no padding: a lone decode row costs a GEMV (each weight read once), and a
// batch reads each block of weights once for all its rows. GEMM libraries pick kernels and reduction
// orders by M, which is why the engine cannot use them for this (docs/serving.md "Batch invariance").
//
// The lane width is the build's (AVX-512: 16, AVX2 + FMA: 8, otherwise 8 scalar lanes with fma), so
// results are invariant within one binary on one CPU, as the issue asks; they differ from the GEMM
// path in the last bits (a different summation order), as any two GEMM kernels do.
#include <cstdint>

namespace strata::cpu {

// out[M, N] (row stride ldo) = A[M, K] (row stride lda) @ W^T + bias, W[N, K] with row stride ldw
// (the Hugging Face layout of a linear layer, as linear_forward), bias[N] or null.
void linear_rows_invariant(float* out, int64_t ldo, const float* A, int64_t lda, const float* W, int64_t ldw,
                           const float* bias, int64_t M, int64_t K, int64_t N);

// The lane width in use: 16, 8 (AVX2) or 8 (portable); "avx512", "avx2" or "portable".
const char* rows_invariant_isa();

}  // namespace strata::cpu
