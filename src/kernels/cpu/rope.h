#pragma once
#include <cstdint>

namespace strata::cpu {

// Rotary position embedding, Hugging Face "rotate_half" convention: channel i is paired with
// channel i + rot/2 for i < rot/2 (rot = rotary dims, even, <= hd; channels >= rot pass through).
// Token t of the sequence has position pos0 + t; angle = pos * theta^(-2i/rot).
// x[B, T, H, hd] -> out[B, T, H, hd] (out may equal x).
void rope_forward(float* out, const float* x, int64_t B, int64_t T, int64_t H, int64_t hd, int64_t rot,
                  int64_t pos0, float theta);
// Inverse rotation: dx = R^T dout (dx may equal dout).
void rope_backward(float* dx, const float* dout, int64_t B, int64_t T, int64_t H, int64_t hd, int64_t rot,
                   int64_t pos0, float theta);

}  // namespace strata::cpu
