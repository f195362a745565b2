#pragma once
// CUDA twin of kernels/cpu/optim.h: same names, signatures and semantics; every pointer is a
// device pointer and the work is queued on the current stream (kernels/cuda/runtime.h).
#include <cstdint>

namespace strata::cuda {

// AdamW (decoupled weight decay, Loshchilov & Hutter), one fused pass over a flat buffer.
// step t >= 1. For each i: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
// p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps) + lr * wd * decay_mask[i] * p
// decay_mask may be null (all decayed). grad_scale multiplies g first (gradient clipping).
void adamw_update(float* params, const float* grads, float* m, float* v, const uint8_t* decay_mask, int64_t N,
                  float lr, float beta1, float beta2, float eps, float weight_decay, int64_t t, float grad_scale);
// Sum of squares of x[N] in double (for the global grad norm).
double sum_squares(const float* x, int64_t N);

}  // namespace strata::cuda
