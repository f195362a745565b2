// Rotary position embedding on CUDA (see rope.h; the CPU twin is kernels/cpu/rope.cpp).
// A first kernel tabulates cos/sin of pos * inv_freq[i] for the T positions ([T, rot/2], angles in
// double like the CPU twin's table), a second rotates every (token, head, pair) from the table.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/rope.h"

namespace strata::cuda {
namespace {

constexpr int kMaxPairs = 512;  // rot/2 <= 512: the frequencies travel as a kernel argument (2 KiB)

struct Freqs {
  float f[kMaxPairs];
};

__global__ void rope_table_kernel(float* __restrict__ cs, float* __restrict__ sn, int64_t T, int64_t half,
                                  int64_t pos0, Freqs inv_freq) {
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < T * half; j += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = j / half, i = j % half;
    double s, c;
    sincos(double(pos0 + t) * double(inv_freq.f[i]), &s, &c);
    cs[j] = float(c);
    sn[j] = float(s);
  }
}

// sign = +1: out = R x; sign = -1: out = R^T x. Each thread reads both halves of its pair before
// writing either, so out may alias x.
__global__ void rope_apply_kernel(float* out, const float* x, const float* __restrict__ cs,
                                  const float* __restrict__ sn, int64_t BT, int64_t T, int64_t H, int64_t hd,
                                  int64_t half, float sign) {
  const int64_t total = BT * H * half;
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < total; j += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = j % half, bth = j / half;  // bth = (bt * H + h)
    const int64_t t = (bth / H) % T;
    const float c = cs[t * half + i], s = sign * sn[t * half + i];
    const int64_t base = bth * hd;
    const float x1 = x[base + i], x2 = x[base + i + half];
    out[base + i] = x1 * c - x2 * s;
    out[base + i + half] = x2 * c + x1 * s;
  }
}

// The channels past rot pass through (only needed when out != x).
__global__ void rope_copy_tail_kernel(float* __restrict__ out, const float* __restrict__ x, int64_t rows, int64_t hd,
                                      int64_t rot) {
  const int64_t w = hd - rot;
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < rows * w; j += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = j / w, c = rot + j % w;
    out[r * hd + c] = x[r * hd + c];
  }
}

void rope_apply(float* out, const float* x, int64_t B, int64_t T, int64_t H, int64_t hd, int64_t rot, int64_t pos0,
                const float* inv_freq, float sign) {
  STRATA_CHECK(rot >= 0 && rot % 2 == 0 && rot <= hd, "rope: rot = {} must be even and <= head_dim {}", rot, hd);
  STRATA_CHECK(inv_freq || rot == 0, "rope: no inv_freq table for rot = {}", rot);
  STRATA_CHECK(B >= 0 && T >= 0 && H >= 0 && pos0 >= 0, "rope: bad shape B={} T={} H={} pos0={}", B, T, H, pos0);
  STRATA_CHECK(rot / 2 <= kMaxPairs, "cuda rope: rot/2 = {} pairs exceeds the kernel's {}", rot / 2, kMaxPairs);
  if (B * T * H == 0) return;
  cudaStream_t stream = current_stream();
  const int64_t half = rot / 2;
  if (half > 0) {
    Freqs f{};
    for (int64_t i = 0; i < half; ++i) f.f[i] = inv_freq[i];  // a host array, read here
    DeviceBuffer table(size_t(2 * T * half) * sizeof(float), stream);
    float* cs = static_cast<float*>(table.data());
    float* sn = cs + T * half;
    STRATA_LAUNCH((grid_1d(T * half), kBlock1d, 0, stream), rope_table_kernel)(cs, sn, T, half, pos0, f);
    CUDA_CHECK_LAUNCH();
    STRATA_LAUNCH((grid_1d(B * T * H * half), kBlock1d, 0, stream), rope_apply_kernel)(out, x, cs, sn, B * T, T, H, hd, half, sign);
    CUDA_CHECK_LAUNCH();
  }
  if (out != x && hd > rot) {
    STRATA_LAUNCH((grid_1d(B * T * H * (hd - rot)), kBlock1d, 0, stream), rope_copy_tail_kernel)(out, x, B * T * H, hd, rot);
    CUDA_CHECK_LAUNCH();
  }
}

}  // namespace

void rope_forward(float* out, const float* x, int64_t B, int64_t T, int64_t H, int64_t hd, int64_t rot,
                  int64_t pos0, const float* inv_freq) {
  rope_apply(out, x, B, T, H, hd, rot, pos0, inv_freq, 1.0f);
}

void rope_backward(float* dx, const float* dout, int64_t B, int64_t T, int64_t H, int64_t hd, int64_t rot,
                   int64_t pos0, const float* inv_freq) {
  rope_apply(dx, dout, B, T, H, hd, rot, pos0, inv_freq, -1.0f);
}

}  // namespace strata::cuda
