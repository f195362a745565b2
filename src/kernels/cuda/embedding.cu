// Token embedding lookup and its gradient on CUDA (see embedding.h; the CPU twin is
// kernels/cpu/embedding.cpp).
//
// The backward is a scatter-add with repeated ids. Atomics would make the sums depend on thread
// timing; instead the (id, position) pairs are radix-sorted (CUB, stable: positions stay ascending
// within an id), and the first position of each run of equal ids sums that run's rows in order and
// adds the total to the table row: deterministic, no atomics. A very frequent id is summed by one
// block (its rows in sequence), which bounds the speed on skewed batches but not the correctness.
#include <cub/cub.cuh>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/embedding.h"
#include "kernels/cuda/index_check.cuh"

namespace strata::cuda {
namespace {

constexpr int kThreads = 128;

unsigned row_grid(int64_t rows) { return unsigned(rows < 65535 * 16 ? (rows < 1 ? 1 : rows) : 65535 * 16); }

// out[n, :] = table[ids[n], :]; an id outside [0, V) writes zeros and is reported into `bad`.
__global__ void embedding_forward_kernel(float* __restrict__ out, const float* __restrict__ table,
                                         const int32_t* __restrict__ ids, int64_t N, int64_t V, int64_t D,
                                         BadIndexSlot* bad) {
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    const int32_t id = ids[n];
    float* o = out + n * D;
    if (id < 0 || id >= V) {
      if (threadIdx.x == 0) report_bad_index(bad, n, id, V);
      for (int64_t d = threadIdx.x; d < D; d += blockDim.x) o[d] = 0.0f;
      continue;
    }
    const float* row = table + int64_t(id) * D;
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) o[d] = row[d];
  }
}

__global__ void iota_kernel(int32_t* __restrict__ v, int64_t N) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < N; i += int64_t(gridDim.x) * blockDim.x)
    v[i] = int32_t(i);
}

// keys[N] sorted ascending, pos[N] the matching positions (ascending within equal keys).
// dtable[key, :] += sum over the run of dout[pos, :], one block per run (its first index).
__global__ void embedding_backward_runs_kernel(float* __restrict__ dtable, const float* __restrict__ dout,
                                               const int32_t* __restrict__ keys, const int32_t* __restrict__ pos,
                                               int64_t N, int64_t D) {
  for (int64_t i = blockIdx.x; i < N; i += gridDim.x) {
    const int32_t id = keys[i];
    if (id < 0 || (i > 0 && keys[i - 1] == id)) continue;  // not a run start (negatives: reported by the host)
    int64_t end = i + 1;
    while (end < N && keys[end] == id) ++end;
    float* dst = dtable + int64_t(id) * D;
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
      float acc = 0.0f;
      for (int64_t j = i; j < end; ++j) acc += dout[int64_t(pos[j]) * D + d];
      dst[d] += acc;
    }
  }
}

}  // namespace

void embedding_forward(float* out, const float* table, const int32_t* ids, int64_t N, int64_t V, int64_t D) {
  STRATA_CHECK(N >= 0 && V >= 0 && D >= 0, "cuda::embedding_forward: negative size N={} V={} D={}", N, V, D);
  if (N == 0) return;
  cudaStream_t stream = current_stream();
  // The id check of the CPU twin costs one synchronisation here (the ids live on the device), except
  // inside a CUDA graph recording, which cannot synchronise: there a bad id (zeros) is reported when
  // the step's stream is synchronised (index_check.cuh).
  IndexCheck check(BadIndex::token, "embedding", stream);
  STRATA_LAUNCH((row_grid(N), kThreads, 0, stream), embedding_forward_kernel)(out, table, ids, N, V, D, check.slot());
  CUDA_CHECK_LAUNCH();
  check.finish();
}

void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t N, int64_t D) {
  STRATA_CHECK(N >= 0 && D >= 0, "cuda::embedding_backward: negative size N={} D={}", N, D);
  STRATA_CHECK(N < (int64_t(1) << 31), "cuda::embedding_backward: {} tokens exceed the int32 sort", N);
  if (N == 0) return;
  cudaStream_t stream = current_stream();
  const int n = int(N);
  DeviceBuffer pairs(size_t(N) * 3 * sizeof(int32_t), stream);
  int32_t* pos_in = static_cast<int32_t*>(pairs.data());
  int32_t* keys_out = pos_in + N;
  int32_t* pos_out = keys_out + N;
  STRATA_LAUNCH((grid_1d(N), kBlock1d, 0, stream), iota_kernel)(pos_in, N);
  CUDA_CHECK_LAUNCH();
  size_t temp_bytes = 0;
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, ids, keys_out, pos_in, pos_out, n, 0, 32, stream));
  DeviceBuffer temp(temp_bytes, stream);
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.data(), temp_bytes, ids, keys_out, pos_in, pos_out, n, 0, 32, stream));
  // Negative ids sort first: one read of the smallest key replaces the CPU twin's per-id check.
  int32_t first[2] = {0, 0};
  CUDA_CHECK(cudaMemcpyAsync(&first[0], keys_out, sizeof(int32_t), cudaMemcpyDeviceToHost, stream));
  CUDA_CHECK(cudaMemcpyAsync(&first[1], pos_out, sizeof(int32_t), cudaMemcpyDeviceToHost, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  STRATA_CHECK(first[0] >= 0, "embedding_backward: negative token id {} at {}", first[0], first[1]);
  STRATA_LAUNCH((row_grid(N), kThreads, 0, stream), embedding_backward_runs_kernel)(dtable, dout, keys_out, pos_out, N, D);
  CUDA_CHECK_LAUNCH();
}

}  // namespace strata::cuda
