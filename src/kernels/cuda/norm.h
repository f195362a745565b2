#pragma once
// CUDA twin of kernels/cpu/norm.h: same names, signatures and semantics; every pointer is a
// device pointer and the work is queued on the current stream (kernels/cuda/runtime.h).
#include <cstdint>

namespace strata::cuda {

// RMSNorm: y = x / sqrt(mean(x^2) + eps) * w.   x[N, D], w[D] -> y[N, D]; saves rstd[N] for backward.
void rmsnorm_forward(float* y, float* rstd, const float* x, const float* w, int64_t N, int64_t D, float eps);
// dx[N, D] assigned, dw[D] accumulated. Needs the rstd of the matching forward.
void rmsnorm_backward(float* dx, float* dw, const float* dy, const float* x, const float* w, const float* rstd,
                      int64_t N, int64_t D);

// Gated RMSNorm of Mamba-2 (norm_before_gate=False): g = x * silu(z); y = g / rms(g) * w, where the
// rms is taken over groups of `group` consecutive channels (group == D: one group).
// x, z[N, D], w[D] -> y[N, D]; saves rstd[N, D/group].
void rmsnorm_gated_forward(float* y, float* rstd, const float* x, const float* z, const float* w, int64_t N,
                           int64_t D, int64_t group, float eps);
// dx, dz[N, D] assigned; dw[D] accumulated.
void rmsnorm_gated_backward(float* dx, float* dz, float* dw, const float* dy, const float* x, const float* z,
                            const float* w, const float* rstd, int64_t N, int64_t D, int64_t group);

}  // namespace strata::cuda
