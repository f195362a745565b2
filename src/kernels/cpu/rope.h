#pragma once
#include <cstdint>

namespace strata::cpu {

// Rotary position embedding, Hugging Face "rotate_half" convention: channel i is paired with
// channel i + rot/2 for i < rot/2 (rot = rotary dims, even, <= hd; channels >= rot pass through).
// Token t of the sequence has position pos0 + t; pair i turns by the angle pos * inv_freq[i].
// inv_freq[rot/2] is a small host array in both backends (a parameter of the op, like theta once
// was): layers/rope_freq.h builds it for the default, linear and llama3 RoPE of transformers.
// x[B, T, H, hd] -> out[B, T, H, hd] (out may equal x).
void rope_forward(float* out, const float* x, int64_t B, int64_t T, int64_t H, int64_t hd, int64_t rot,
                  int64_t pos0, const float* inv_freq);
// Inverse rotation: dx = R^T dout (dx may equal dout).
void rope_backward(float* dx, const float* dout, int64_t B, int64_t T, int64_t H, int64_t hd, int64_t rot,
                   int64_t pos0, const float* inv_freq);

}  // namespace strata::cpu
