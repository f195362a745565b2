#pragma once
// A small fp32 block-tile matrix product for kernels whose operands are not plain matrices: the SSD
// chunk products (decay-masked, scaled by dt, read through the [B, T, H, P] layout) and the MoE
// grouped expert GEMM. The caller supplies A(m, k) and B(k, n) as functors that fold the masks and
// scales into the load; the tile stages them through shared memory and accumulates in registers
// (the SIMT structure of a classic sgemm: each thread owns TM x TN outputs).
//
// Thread t of the block owns rows row(i) = ty + i * (BM / TM) and columns col(j) = tx + j * (BN / TN):
// interleaved rather than contiguous, so the shared-memory reads of one warp hit distinct banks.

namespace strata::cuda::tile {

template <int BM, int BN, int BK, int TM, int TN>
struct Mma {
  static_assert(BM % TM == 0 && BN % TN == 0, "tile must split evenly over the threads");
  static constexpr int kRowThreads = BM / TM, kColThreads = BN / TN;
  static constexpr int kThreads = kRowThreads * kColThreads;
  // Shared staging, padded by one column so that k-fast stores do not all fall in one bank.
  static constexpr int kLdA = BM + 1, kLdB = BN + 1;
  static constexpr int kSmemFloats = BK * kLdA + BK * kLdB;

  float acc[TM][TN];
  int ty, tx;

  __device__ Mma() : ty(int(threadIdx.x) / kColThreads), tx(int(threadIdx.x) % kColThreads) { zero(); }

  __device__ int row(int i) const { return ty + i * kRowThreads; }
  __device__ int col(int j) const { return tx + j * kColThreads; }

  __device__ void zero() {
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;
  }

  // acc(m, n) += sum_{k in [k0, k1)} fa(m, k) * fb(k, n) with m, n local to the tile (m < BM,
  // n < BN) and k absolute. The functors return 0 for whatever lies outside their operand (rows past
  // the end, masked entries); k >= k1 is never asked for. kAmFast / kBnFast say which index of each
  // operand is contiguous in memory, so that the staging loads coalesce. smem holds kSmemFloats.
  // Every thread of the block must call this (it synchronises).
  template <bool kAmFast, bool kBnFast, class FA, class FB>
  __device__ void run(float* smem, int k0, int k1, FA fa, FB fb) {
    float* As = smem;             // [BK][kLdA]
    float* Bs = smem + BK * kLdA; // [BK][kLdB]
    for (int kb = k0; kb < k1; kb += BK) {
      for (int e = int(threadIdx.x); e < BM * BK; e += kThreads) {
        const int m = kAmFast ? e % BM : e / BK, k = kAmFast ? e / BM : e % BK;
        As[k * kLdA + m] = kb + k < k1 ? fa(m, kb + k) : 0.0f;
      }
      for (int e = int(threadIdx.x); e < BN * BK; e += kThreads) {
        const int n = kBnFast ? e % BN : e / BK, k = kBnFast ? e / BN : e % BK;
        Bs[k * kLdB + n] = kb + k < k1 ? fb(kb + k, n) : 0.0f;
      }
      __syncthreads();
#pragma unroll
      for (int k = 0; k < BK; ++k) {
        float a[TM], b[TN];
#pragma unroll
        for (int i = 0; i < TM; ++i) a[i] = As[k * kLdA + row(i)];
#pragma unroll
        for (int j = 0; j < TN; ++j) b[j] = Bs[k * kLdB + col(j)];
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
          for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
      }
      __syncthreads();  // the next stage overwrites As / Bs
    }
  }
};

// The configuration the SSD and MoE kernels use: 64 x 64 outputs per block of 256 threads.
using Mma64 = Mma<64, 64, 16, 4, 4>;

}  // namespace strata::cuda::tile
