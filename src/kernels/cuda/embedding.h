#pragma once
// CUDA twin of kernels/cpu/embedding.h: same names, signatures and semantics; every pointer is a
// device pointer and the work is queued on the current stream (kernels/cuda/runtime.h).
#include <cstdint>

namespace strata::cuda {

// out[N, D] = table[ids[n], :]   table[V, D]; ids checked against V.
void embedding_forward(float* out, const float* table, const int32_t* ids, int64_t N, int64_t V, int64_t D);
// dtable[ids[n], :] += dout[n, :]
void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t N, int64_t D);

}  // namespace strata::cuda
