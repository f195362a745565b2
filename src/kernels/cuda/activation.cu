// SiLU and SwiGLU on CUDA, elementwise grid-stride loops (see activation.h; the CPU twin is
// kernels/cpu/activation.cpp). Memory-bound: one read of each input, one write of each output.
#include "kernels/cuda/activation.h"
#include "kernels/cuda/common.cuh"

namespace strata::cuda {
namespace {

#define STRATA_GRID_STRIDE(i, N) \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (N); i += int64_t(gridDim.x) * blockDim.x)

__global__ void swiglu_forward_kernel(float* out, const float* gate, const float* up, int64_t N) {
  STRATA_GRID_STRIDE(i, N) {
    const float g = gate[i];
    out[i] = g * sigmoidf_stable(g) * up[i];
  }
}

// silu'(g) = s (1 + g (1 - s)).  dgate = dout * up * silu'(g), dup = dout * silu(g).
__global__ void swiglu_backward_kernel(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                                       int64_t N) {
  STRATA_GRID_STRIDE(i, N) {
    const float g = gate[i], s = sigmoidf_stable(g), d = dout[i];
    const float u = up[i];  // read before the writes: a caller may alias dup with up
    dup[i] = d * g * s;
    dgate[i] = d * u * s * (1.0f + g * (1.0f - s));
  }
}

__global__ void silu_forward_kernel(float* out, const float* x, int64_t N) {
  STRATA_GRID_STRIDE(i, N) {
    const float v = x[i];
    out[i] = v * sigmoidf_stable(v);
  }
}

__global__ void silu_backward_kernel(float* dx, const float* dout, const float* x, int64_t N) {
  STRATA_GRID_STRIDE(i, N) {
    const float v = x[i], s = sigmoidf_stable(v);
    dx[i] = dout[i] * s * (1.0f + v * (1.0f - s));
  }
}

#undef STRATA_GRID_STRIDE

}  // namespace

void swiglu_forward(float* out, const float* gate, const float* up, int64_t N) {
  if (N <= 0) return;
  STRATA_LAUNCH((grid_1d(N), kBlock1d, 0, current_stream()), swiglu_forward_kernel)(out, gate, up, N);
  CUDA_CHECK_LAUNCH();
}

void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t N) {
  if (N <= 0) return;
  STRATA_LAUNCH((grid_1d(N), kBlock1d, 0, current_stream()), swiglu_backward_kernel)(dgate, dup, dout, gate, up, N);
  CUDA_CHECK_LAUNCH();
}

void silu_forward(float* out, const float* x, int64_t N) {
  if (N <= 0) return;
  STRATA_LAUNCH((grid_1d(N), kBlock1d, 0, current_stream()), silu_forward_kernel)(out, x, N);
  CUDA_CHECK_LAUNCH();
}

void silu_backward(float* dx, const float* dout, const float* x, int64_t N) {
  if (N <= 0) return;
  STRATA_LAUNCH((grid_1d(N), kBlock1d, 0, current_stream()), silu_backward_kernel)(dx, dout, x, N);
  CUDA_CHECK_LAUNCH();
}

}  // namespace strata::cuda
