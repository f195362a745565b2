#include "kernels/cpu/argmax.h"

namespace strata::cpu {

void argmax_rows(int32_t* out, const float* x, int64_t N, int64_t V) {
#pragma omp parallel for schedule(static) if (N * V > 16384)
  for (int64_t n = 0; n < N; ++n) {
    const float* r = x + n * V;
    int64_t best = 0;
    for (int64_t v = 1; v < V; ++v)
      if (r[v] > r[best]) best = v;
    out[n] = int32_t(best);
  }
}

}  // namespace strata::cpu
