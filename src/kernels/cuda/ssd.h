#pragma once
// CUDA twin of kernels/cpu/ssd.h: same names, signatures and semantics; every pointer is a
// device pointer and the work is queued on the current stream (kernels/cuda/runtime.h).
#include <cstdint>

namespace strata::cuda {

// Mamba-2 state-space duality (mamba_ssm mamba_chunk_scan_combined with dt_softplus=True, z=None).
// H heads of P channels; G groups of B/C shared by H/G heads each (head h uses group h / (H/G)).
//   dt[b,t,h] = softplus(dt_raw[b,t,h] + dt_bias[h]);  a = exp(dt * A[h])   (A[h] < 0 scalar per head)
//   S[b,h,p,n] = a * S + dt * x[b,t,h,p] * Bm[b,t,g,n]                      (S starts at s0, or 0)
//   y[b,t,h,p] = sum_n Cm[b,t,g,n] * S[b,h,p,n] + Dskip[h] * x[b,t,h,p]
// Computed in the chunked form: within a chunk of `chunk` steps as masked matmuls, between chunks by
// passing states. x[B,T,H,P], dt_raw[B,T,H], dt_bias[H], A[H], Bm/Cm[B,T,G,N], Dskip[H]
// -> y[B,T,H,P]; s_last[B,H,P,N] (may be null) gets the final state. s0[B,H,P,N] may be null.
void ssd_forward(float* y, float* s_last, const float* x, const float* dt_raw, const float* dt_bias,
                 const float* A, const float* Bm, const float* Cm, const float* Dskip, const float* s0, int64_t B,
                 int64_t T, int64_t H, int64_t P, int64_t G, int64_t N, int64_t chunk);
// Backward with s0 = 0. dx, ddt_raw, dBm, dCm assigned; dA[H], dDskip[H], ddt_bias[H] accumulated.
void ssd_backward(float* dx, float* ddt_raw, float* dA, float* dBm, float* dCm, float* dDskip, float* ddt_bias,
                  const float* dy, const float* x, const float* dt_raw, const float* dt_bias, const float* A,
                  const float* Bm, const float* Cm, const float* Dskip, int64_t B, int64_t T, int64_t H, int64_t P,
                  int64_t G, int64_t N, int64_t chunk);
// One token: state[B,H,P,N] updated in place. x[B,H,P], dt_raw[B,H], Bm/Cm[B,G,N] -> y[B,H,P].
void ssd_step(float* y, float* state, const float* x, const float* dt_raw, const float* dt_bias, const float* A,
              const float* Bm, const float* Cm, const float* Dskip, int64_t B, int64_t H, int64_t P, int64_t G,
              int64_t N);

}  // namespace strata::cuda
