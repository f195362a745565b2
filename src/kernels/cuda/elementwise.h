#pragma once
// CUDA twin of kernels/cpu/elementwise.h: same names, signatures and semantics; every pointer is a
// device pointer and the work is queued on the current stream (kernels/cuda/runtime.h).
// Small elementwise ops on flat arrays: the residual adds, gradient scaling and copies that the
// model and layers would otherwise write as host loops, so that they run where the data lives
// (the CPU twin is kernels/cpu/elementwise.h).
#include <cstdint>

namespace strata::cuda {

// y[i] += x[i]   x, y[N] (the residual stream: x may not alias y).
void add_inplace(float* y, const float* x, int64_t N);
// x[i] *= s   x[N]
void scale_inplace(float* x, float s, int64_t N);
// y[i] += a[i] * b[i]   (e.g. dA_log += dA * A)
void mul_add_inplace(float* y, const float* a, const float* b, int64_t N);
// out[i] = -exp(x[i])   (Mamba's A = -exp(A_log)); out may equal x.
void neg_exp(float* out, const float* x, int64_t N);
// dst[i] = src[i]   dst[N], src[N] not overlapping.
void copy_f32(float* dst, const float* src, int64_t N);
// dst[r * dst_ld + c] = src[r * src_ld + c] for r < rows, c < cols: a block of columns between
// row-major buffers (splitting Mamba-2's x|B|C, writing rows of a cache). Not overlapping.
void copy_strided(float* dst, int64_t dst_ld, const float* src, int64_t src_ld, int64_t rows, int64_t cols);
// As copy_strided, with each row's channels reordered: split_pairs = true takes interleaved pairs
// to halves (dst[c] = src[2c], dst[cols/2 + c] = src[2c + 1]; DeepSeek-V3's RoPE layout to ours),
// false is the inverse (halves to interleaved pairs). cols is even.
void copy_strided_pairs(float* dst, int64_t dst_ld, const float* src, int64_t src_ld, int64_t rows, int64_t cols,
                        bool split_pairs);
// dst[r * dst_ld + c] += src[r * src_ld + c] for r < rows, c < cols (summing per-head slices; src_ld = 0
// broadcasts one row, e.g. a bias). Not overlapping.
void add_strided(float* dst, int64_t dst_ld, const float* src, int64_t src_ld, int64_t rows, int64_t cols);
// out[i] = bf16(in[i])   in[n] -> out[n] raw bf16 bits, rounded to nearest even exactly as
// core/dtype.h f32_to_bf16 (NaN stays a quiet NaN; inf and signed zero kept). Not overlapping.
void cast_f32_to_bf16(uint16_t* out, const float* in, int64_t n);

}  // namespace strata::cuda
