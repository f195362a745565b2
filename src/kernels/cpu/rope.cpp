// Rotary position embedding (Hugging Face rotate_half convention), see rope.h.
#include "kernels/cpu/rope.h"

#include <cmath>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/isa.h"

namespace strata::cpu {
namespace {

// cos/sin of pos * inv_freq[i] for t in [0, T), i in [0, rot/2): tables cs, sn [T, rot/2].
// Computed once per call and shared by every batch row and head. Angles are stepped by an exact
// rotation in double (cos/sin of the increment computed once) instead of T * rot/2 libm calls: the
// drift after 10^5 steps is ~1e-11, far below fp32 resolution, while the table costs a few
// multiply-adds per entry.
// inv_freq is read as the fp32 value transformers holds; only the products and the stepping are in
// double, so the angles are those of HF's fp32 inv_freq, computed more exactly than HF's fp32 product.
void rope_tables(std::vector<float>& cs, std::vector<float>& sn, int64_t T, int64_t rot, int64_t pos0,
                 const float* inv_freq) {
  const int64_t half = rot / 2;
  cs.resize(size_t(T * half));
  sn.resize(size_t(T * half));
  for (int64_t i = 0; i < half; ++i) {
    const double w = double(inv_freq[i]);
    const double a0 = double(pos0) * w;
    double c = std::cos(a0), s = std::sin(a0);
    const double cw = std::cos(w), sw = std::sin(w);
    for (int64_t t = 0; t < T; ++t) {
      cs[t * half + i] = float(c);
      sn[t * half + i] = float(s);
      const double cn = c * cw - s * sw;
      s = s * cw + c * sw;
      c = cn;
    }
  }
}

// sign = +1: out = R x (forward); sign = -1: out = R^T x (backward, the rotation by -angle).
STRATA_CPU_CLONES
void rope_apply(float* out, const float* x, int64_t B, int64_t T, int64_t H, int64_t hd, int64_t rot, int64_t pos0,
                const float* inv_freq, float sign) {
  STRATA_CHECK(rot >= 0 && rot % 2 == 0 && rot <= hd, "rope: rot = {} must be even and <= head_dim {}", rot, hd);
  STRATA_CHECK(inv_freq || rot == 0, "rope: no inv_freq table for rot = {}", rot);
  STRATA_CHECK(B >= 0 && T >= 0 && H >= 0 && pos0 >= 0, "rope: bad shape B={} T={} H={} pos0={}", B, T, H, pos0);
  if (B * T * H == 0) return;
  const int64_t half = rot / 2;
  std::vector<float> cs, sn;
  rope_tables(cs, sn, T, rot, pos0, inv_freq);
  // A decode step rotates a few hundred values: not worth waking the thread team.
#pragma omp parallel for schedule(static) if (B * T * H * hd > 16384)
  for (int64_t bt = 0; bt < B * T; ++bt) {
    const int64_t t = bt % T;
    const float* c = cs.data() + t * half;
    const float* s = sn.data() + t * half;
    for (int64_t h = 0; h < H; ++h) {
      const float* xi = x + (bt * H + h) * hd;
      float* o = out + (bt * H + h) * hd;
      // Both halves are read before either is written, so out may alias x.
#pragma omp simd
      for (int64_t i = 0; i < half; ++i) {
        const float x1 = xi[i], x2 = xi[i + half];
        const float si = sign * s[i];
        o[i] = x1 * c[i] - x2 * si;
        o[i + half] = x2 * c[i] + x1 * si;
      }
      if (o != xi)
        for (int64_t i = rot; i < hd; ++i) o[i] = xi[i];
    }
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

}  // namespace strata::cpu
