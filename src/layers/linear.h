#pragma once
// The linear layers' products at the Ctx's precision. Every projection of every block and the LM
// head goes through these two, so train.precision is decided in one place:
//   fp32: the fp32 kernels (kernels/cpu/gemm.h and its CUDA twin), exactly as if called directly.
//   bf16: inp (and, in backward, dout) rounded to bf16 into ctx.arena scratch, the weight read
//         from the ParamStore's bf16 shadow (ctx.params), the products by gemm_bf16 with fp32
//         accumulation; out, bias, dinp, dweight and dbias stay fp32, and dweight accumulates into
//         the fp32 gradient (beta = 1), so the optimizer sees fp32 gradients of fp32 master weights.
// The arguments are the kernels' (plus the Ctx); in bf16 mode `weight` must point into ctx.params'
// flat buffer (a weight or a slice of one).
#include <cstdint>

#include "layers/block.h"

namespace strata {

// inp[N, IC], weight[OC, IC], bias[OC] or null -> out[N, OC] = inp @ weight^T + bias
// ctx.row_tile > 0: a row's output is bitwise independent of N (Ctx::row_tile): row-invariant CPU
// kernels (kernels/cpu/gemm_rows.h, quant GEMV), elsewhere (CUDA, bf16) tiles of row_tile rows.
void linear_forward(const Ctx& ctx, float* out, const float* inp, const float* weight, const float* bias, int64_t N,
                    int64_t IC, int64_t OC);
// dinp[N, IC] = dout @ weight (assigned; skipped if null; accumulated instead when accumulate_dinp),
// dweight[OC, IC] += dout^T @ inp (skipped if null), dbias[OC] += sum_n dout (skipped if null).
void linear_backward(const Ctx& ctx, float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int64_t N, int64_t IC, int64_t OC, bool accumulate_dinp = false);

// C[M, N] = A[M, K] @ op(B) (op(B) = B[K, N], or B[N, K]^T when trans_b; beta = 0), fp32, with row
// strides lda, ldb, ldc: the plain product for the blocks' own GEMMs outside linear_forward (MLA's
// absorbed per-head products), row-invariant when ctx.row_tile is set, as linear_forward.
void rows_gemm(const Ctx& ctx, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
               const float* B, int64_t ldb, float* C, int64_t ldc);

// The bf16 shadow that bf16 mode reads (ParamStore holds its memory; the cast is an op, so it lives
// here, above the kernels). enable: allocates it (once) on the parameters' device and refreshes it.
// refresh: one cast op over the flat buffer, after every write through data()/flat() (the
// optimizer step, a restore); a no-op when the store has no shadow.
void enable_bf16_shadow(ParamStore& ps);
void refresh_bf16_shadow(ParamStore& ps);

}  // namespace strata
