#pragma once
// CUDA twin of kernels/cpu/conv1d.h: same names, signatures and semantics; every pointer is a
// device pointer and the work is queued on the current stream (kernels/cuda/runtime.h).
#include <cstdint>

namespace strata::cuda {

// Causal depthwise conv1d (Mamba's short conv), channels last.
// y[b,t,c] = bias[c] + sum_{j<K} w[c,j] * x[b, t-(K-1)+j, c]   (x before t=0 is zero)
// x[B, T, C], w[C, K] (HF weight [C,1,K]), bias[C] or null -> y[B, T, C]. If silu, y = silu(y).
void conv1d_causal_forward(float* y, const float* x, const float* w, const float* bias, int64_t B, int64_t T,
                           int64_t C, int64_t K, bool silu);
// dx[B, T, C] assigned, dw[C, K] and dbias[C] accumulated (dbias may be null).
void conv1d_causal_backward(float* dx, float* dw, float* dbias, const float* dy, const float* x, const float* w,
                            const float* bias, int64_t B, int64_t T, int64_t C, int64_t K, bool silu);
// One token: state[B, C, K-1] holds the previous K-1 inputs (oldest first) and is shifted in place.
// x[B, C] -> y[B, C].
void conv1d_causal_step(float* y, float* state, const float* x, const float* w, const float* bias, int64_t B,
                        int64_t C, int64_t K, bool silu);
// The state T steps over x[B, T, C] would leave (zeros before t=0): state[B, C, K-1].
void conv1d_state_from_sequence(float* state, const float* x, int64_t B, int64_t T, int64_t C, int64_t K);

}  // namespace strata::cuda
