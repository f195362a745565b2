#pragma once
#include <cstdint>

namespace strata::cpu {

// out[n] = the first v maximising x[n, v]   x[N, V] -> out[N] (host memory: evaluation reads its
// predictions on the host, so there is no CUDA twin; the model copies cuda logits down first).
void argmax_rows(int32_t* out, const float* x, int64_t N, int64_t V);

}  // namespace strata::cpu
