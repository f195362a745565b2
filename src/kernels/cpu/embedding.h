#pragma once
#include <cstdint>

namespace strata::cpu {

// out[N, D] = table[ids[n], :]   table[V, D]; ids checked against V.
void embedding_forward(float* out, const float* table, const int32_t* ids, int64_t N, int64_t V, int64_t D);
// dtable[ids[n], :] += dout[n, :]
void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t N, int64_t D);

}  // namespace strata::cpu
