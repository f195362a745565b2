#pragma once
// CUDA twin of kernels/cpu/rope.h: same names, signatures and semantics; x/out/dx/dout are device
// pointers and the work is queued on the current stream (kernels/cuda/runtime.h). inv_freq stays a
// small HOST array (rot/2 <= 512 values), passed to the kernel by value.
#include <cstdint>

namespace strata::cuda {

// Rotary position embedding, Hugging Face "rotate_half" convention: channel i is paired with
// channel i + rot/2 for i < rot/2 (rot = rotary dims, even, <= hd; channels >= rot pass through).
// Token t of the sequence has position pos0 + t; pair i turns by the angle pos * inv_freq[i].
// x[B, T, H, hd] -> out[B, T, H, hd] (out may equal x).
void rope_forward(float* out, const float* x, int64_t B, int64_t T, int64_t H, int64_t hd, int64_t rot,
                  int64_t pos0, const float* inv_freq);
// Inverse rotation: dx = R^T dout (dx may equal dout).
void rope_backward(float* dx, const float* dout, int64_t B, int64_t T, int64_t H, int64_t hd, int64_t rot,
                   int64_t pos0, const float* inv_freq);

}  // namespace strata::cuda
