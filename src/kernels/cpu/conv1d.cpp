// Causal depthwise conv1d (Mamba's short convolution), channels last: every loop runs over the
// contiguous channel axis, so one token row is a handful of vector FMAs per tap.
#include "kernels/cpu/conv1d.h"

#include <algorithm>
#include <vector>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/scan_math.h"

namespace strata::cpu {
namespace {

using ssm_math::sigmoid;

// Taps transposed to wT[K, C] so that the per-tap loop over channels is contiguous.
std::vector<float> transpose_taps(const float* w, int64_t C, int64_t K) {
  std::vector<float> wT(size_t(K * C));
  for (int64_t c = 0; c < C; ++c)
    for (int64_t j = 0; j < K; ++j) wT[size_t(j * C + c)] = w[c * K + j];
  return wT;
}

// Pre-activation of one output row: acc[c] = bias[c] + sum_j wT[j,c] * x[t-(K-1)+j, c].
// xb is the sequence's x[T, C].
inline void conv_row(float* __restrict acc, const float* __restrict xb, const float* __restrict wT, const float* bias,
                     int64_t t, int64_t C, int64_t K) {
  if (bias)
    std::copy(bias, bias + C, acc);
  else
    std::fill(acc, acc + C, 0.0f);
  for (int64_t j = std::max<int64_t>(0, K - 1 - t); j < K; ++j) {
    const float* __restrict xr = xb + (t - (K - 1) + j) * C;
    const float* __restrict wr = wT + j * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) acc[c] += wr[c] * xr[c];
  }
}

constexpr int64_t kRows = 64;  // tokens per backward chunk: the unit of the fixed-order dw reduction

}  // namespace

// x[B, T, C], w[C, K], bias[C] or null -> y[B, T, C] (silu applied when `silu`).
STRATA_CPU_CLONES
void conv1d_causal_forward(float* y, const float* x, const float* w, const float* bias, int64_t B, int64_t T, int64_t C,
                           int64_t K, bool silu) {
  const std::vector<float> wT = transpose_taps(w, C, K);
#pragma omp parallel for schedule(static) if (B * T * C * K > 32768)
  for (int64_t r = 0; r < B * T; ++r) {
    const int64_t b = r / T, t = r % T;
    float* yr = y + r * C;
    conv_row(yr, x + b * T * C, wT.data(), bias, t, C, K);
    if (silu) {
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) yr[c] = yr[c] * sigmoid(yr[c]);
    }
  }
}

// With g = dy * silu'(pre) (or dy):  dx[s] = sum_j w[j] g[s+(K-1)-j],  dw[j] += sum_t g[t] x[t-(K-1)+j],
// dbias += sum_t g[t]. dx assigned; dw, dbias accumulated.
STRATA_CPU_CLONES
void conv1d_causal_backward(float* dx, float* dw, float* dbias, const float* dy, const float* x, const float* w,
                            const float* bias, int64_t B, int64_t T, int64_t C, int64_t K, bool silu) {
  const std::vector<float> wT = transpose_taps(w, C, K);
  const int64_t tchunks = (T + kRows - 1) / kRows, nchunks = B * tchunks;
  // Per-chunk partials of [dw^T (K rows); dbias] added in chunk order afterwards: deterministic for
  // any thread count, and no atomics.
  std::vector<float> partial(size_t(nchunks * (K + 1) * C), 0.0f);
  std::vector<float> gbuf(silu ? size_t(B * T * C) : 0);
  const float* g = silu ? gbuf.data() : dy;
  const bool par = B * T * C * K > 32768;

#pragma omp parallel for schedule(static) if (par)
  for (int64_t ch = 0; ch < nchunks; ++ch) {
    const int64_t b = ch / tchunks, t0 = (ch % tchunks) * kRows, t1 = std::min(T, t0 + kRows);
    const float* xb = x + b * T * C;
    float* __restrict pw = partial.data() + ch * (K + 1) * C;
    float* __restrict pb = pw + K * C;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t r = b * T + t;
      const float* __restrict gr = dy + r * C;
      if (silu) {
        float* __restrict gw = gbuf.data() + r * C;
        conv_row(gw, xb, wT.data(), bias, t, C, K);  // pre-activation, overwritten by g below
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) {
          const float s = sigmoid(gw[c]);
          gw[c] = gr[c] * s * (1.0f + gw[c] * (1.0f - s));
        }
        gr = gw;
      }
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) pb[c] += gr[c];
      for (int64_t j = std::max<int64_t>(0, K - 1 - t); j < K; ++j) {
        const float* __restrict xr = xb + (t - (K - 1) + j) * C;
        float* __restrict pj = pw + j * C;
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) pj[c] += gr[c] * xr[c];
      }
    }
  }

#pragma omp parallel for schedule(static) if (par)
  for (int64_t r = 0; r < B * T; ++r) {
    const int64_t b = r / T, s = r % T;
    float* __restrict dxr = dx + r * C;
    std::fill(dxr, dxr + C, 0.0f);
    // Output t = s + (K-1) - j reads x[s] through tap j.
    for (int64_t j = std::max<int64_t>(0, s + K - T); j < K; ++j) {
      const float* __restrict gr = g + (b * T + s + (K - 1) - j) * C;
      const float* __restrict wr = wT.data() + j * C;
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) dxr[c] += wr[c] * gr[c];
    }
  }

  // Chunk order for every (tap, channel), vectorised over channels.
  float* sum = partial.data();
  for (int64_t ch = 1; ch < nchunks; ++ch) {
    const float* p = partial.data() + ch * (K + 1) * C;
#pragma omp simd
    for (int64_t i = 0; i < (K + 1) * C; ++i) sum[i] += p[i];
  }
  for (int64_t c = 0; c < C; ++c)
    for (int64_t j = 0; j < K; ++j) dw[c * K + j] += sum[j * C + c];
  if (dbias)
    for (int64_t c = 0; c < C; ++c) dbias[c] += sum[K * C + c];
}

// state[B, C, K-1] (oldest first), x[B, C] -> y[B, C]; the state shifts left by one and takes x.
STRATA_CPU_CLONES
void conv1d_causal_step(float* y, float* state, const float* x, const float* w, const float* bias, int64_t B, int64_t C,
                        int64_t K, bool silu) {
  const int64_t S = K - 1;
#pragma omp parallel for schedule(static) if (B * C * K > 65536)
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t c = 0; c < C; ++c) {
      float* st = state + (b * C + c) * S;
      const float* wc = w + c * K;
      const float xv = x[b * C + c];
      float acc = bias ? bias[c] : 0.0f;
      // Same summation order as the forward (oldest tap first), so step and forward agree closely.
      for (int64_t j = 0; j < S; ++j) acc += wc[j] * st[j];
      acc += wc[S] * xv;
      for (int64_t j = 0; j + 1 < S; ++j) st[j] = st[j + 1];
      if (S > 0) st[S - 1] = xv;
      y[b * C + c] = silu ? acc * sigmoid(acc) : acc;
    }
  }
}

// state[b, c, j] = x[b, T-(K-1)+j, c], zero where that index is before the sequence start.
void conv1d_state_from_sequence(float* state, const float* x, int64_t B, int64_t T, int64_t C, int64_t K) {
  const int64_t S = K - 1;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t j = 0; j < S; ++j) {
        const int64_t t = T - S + j;
        state[(b * C + c) * S + j] = t >= 0 ? x[(b * T + t) * C + c] : 0.0f;
      }
}

}  // namespace strata::cpu
