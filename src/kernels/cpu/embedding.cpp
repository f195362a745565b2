// Token embedding lookup and its scatter-add gradient.
#include <cstring>

#include "core/error.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/isa.h"

namespace strata::cpu {

// out[N, D] = table[ids[n], :]   table[V, D], ids[N].
void embedding_forward(float* out, const float* table, const int32_t* ids, int64_t N, int64_t V, int64_t D) {
  // Validated before the parallel loop: an exception must not escape an OpenMP region.
  for (int64_t n = 0; n < N; ++n)
    STRATA_CHECK(ids[n] >= 0 && ids[n] < V, "embedding: token id {} at position {} outside the vocabulary [0, {})",
                 ids[n], n, V);
#pragma omp parallel for schedule(static) if (N * D > 65536)
  for (int64_t n = 0; n < N; ++n) std::memcpy(out + n * D, table + int64_t(ids[n]) * D, size_t(D) * sizeof(float));
}

// dtable[ids[n], :] += dout[n, :]   dtable[V, D], dout[N, D].
STRATA_CPU_CLONES
void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t N, int64_t D) {
  // Repeated ids make a row-parallel scatter race; splitting the channels instead lets every thread
  // walk all tokens in order, so the sums are race-free and independent of the thread count.
  // Only the sign can be checked here (V is unknown); the forward checked the upper bound.
  for (int64_t n = 0; n < N; ++n) STRATA_CHECK(ids[n] >= 0, "embedding_backward: negative token id {} at {}", ids[n], n);
  constexpr int64_t kBlock = 64;
  const int64_t nblocks = (D + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (N * D > 65536 && nblocks > 1)
  for (int64_t b = 0; b < nblocks; ++b) {
    const int64_t d0 = b * kBlock, len = (d0 + kBlock < D ? d0 + kBlock : D) - d0;
    for (int64_t n = 0; n < N; ++n) {
      float* dst = dtable + int64_t(ids[n]) * D + d0;
      const float* src = dout + n * D + d0;
      for (int64_t d = 0; d < len; ++d) dst[d] += src[d];
    }
  }
}

}  // namespace strata::cpu
