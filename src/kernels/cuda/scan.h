#pragma once
// CUDA twin of kernels/cpu/scan.h: same names, signatures and semantics; every pointer is a
// device pointer and the work is queued on the current stream (kernels/cuda/runtime.h). One limit
// the CPU twin does not have: the state size N is at most 256 (Mamba-1 models use 16); larger N
// throws. The backward takes stream-ordered scratch of about B*T*D*N/64 + 2*B*T*N*D/(128/L) floats
// (segment checkpoints and per-channel-group dB/dC partials; L = lanes per channel, 4 at N = 16).
#include <cstdint>

namespace strata::cuda {

// Mamba-1 selective scan (mamba_ssm selective_scan_ref with delta_softplus=True), channels last.
//   dt[b,t,d] = softplus(delta[b,t,d] + delta_bias[d])
//   h[b,d,n]  = exp(dt * A[d,n]) * h + dt * Bm[b,t,n] * u[b,t,d]       (h starts at h0, or 0)
//   y[b,t,d]  = sum_n Cm[b,t,n] * h[b,d,n] + Dskip[d] * u[b,t,d];  if z: y *= silu(z[b,t,d])
// u, delta, z[B, T, D]; delta_bias[D]; A[D, N] (negative: A = -exp(A_log)); Bm, Cm[B, T, N]; Dskip[D]
// -> y[B, T, D]; h_last[B, D, N] (may be null) gets the final state. h0[B, D, N] may be null.
void selective_scan_forward(float* y, float* h_last, const float* u, const float* delta, const float* delta_bias,
                            const float* A, const float* Bm, const float* Cm, const float* Dskip, const float* z,
                            const float* h0, int64_t B, int64_t T, int64_t D, int64_t N);
// Backward with h0 = 0, recomputing states (nothing saved but the inputs).
// du, ddelta, dBm, dCm, dz assigned (dz only if z); dA[D,N], dDskip[D], ddelta_bias[D] accumulated.
void selective_scan_backward(float* du, float* ddelta, float* dA, float* dBm, float* dCm, float* dDskip,
                             float* ddelta_bias, float* dz, const float* dy, const float* u, const float* delta,
                             const float* delta_bias, const float* A, const float* Bm, const float* Cm,
                             const float* Dskip, const float* z, int64_t B, int64_t T, int64_t D, int64_t N);
// One token: h[B, D, N] updated in place. u, delta, z[B, D]; Bm, Cm[B, N] -> y[B, D].
void selective_scan_step(float* y, float* h, const float* u, const float* delta, const float* delta_bias,
                         const float* A, const float* Bm, const float* Cm, const float* Dskip, const float* z,
                         int64_t B, int64_t D, int64_t N);

}  // namespace strata::cuda
