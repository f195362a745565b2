#pragma once
// CUDA twin of kernels/cpu/activation.h: same names, signatures and semantics; every pointer is a
// device pointer and the work is queued on the current stream (kernels/cuda/runtime.h).
#include <cstdint>

namespace strata::cuda {

// SwiGLU: out = silu(gate) * up.   gate, up, out[N] (flattened).
void swiglu_forward(float* out, const float* gate, const float* up, int64_t N);
// dgate, dup[N] assigned.
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t N);

// silu(x) = x * sigmoid(x), elementwise; out may equal x.
void silu_forward(float* out, const float* x, int64_t N);
void silu_backward(float* dx, const float* dout, const float* x, int64_t N);  // dx assigned

}  // namespace strata::cuda
