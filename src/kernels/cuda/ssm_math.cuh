#pragma once
// Device twins of kernels/cpu/scan_math.h for the SSM kernels (conv1d, selective scan, SSD): the same
// overflow-free forms, written with CUDA's accurate expf / log1pf (no fast-math intrinsics), so the
// CUDA twins agree with the CPU ones to a few ulp.

namespace strata::cuda::ssm_math {

// softplus(x) = log(1 + e^x) = max(x, 0) + log1p(e^-|x|): no overflow for large |x|.
__device__ __forceinline__ float softplus(float x) { return fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x))); }

// sigmoid(x) from e = exp(-|x|) <= 1, so nothing overflows.
__device__ __forceinline__ float sigmoid(float x) {
  const float e = expf(-fabsf(x));
  const float r = 1.0f / (1.0f + e);
  return x >= 0.0f ? r : e * r;
}

__device__ __forceinline__ float silu(float x) { return x * sigmoid(x); }

// d silu(x) / dx = s (1 + x (1 - s)) with s = sigmoid(x).
__device__ __forceinline__ float silu_grad(float x) {
  const float s = sigmoid(x);
  return s * (1.0f + x * (1.0f - s));
}

}  // namespace strata::cuda::ssm_math
