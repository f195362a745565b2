// attention_forward with bf16 inputs (see attention.h): the reference of the CUDA tensor-core
// kernel. Widens the used range of q, k, v to fp32 and runs attention_forward.
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "kernels/cpu/attention.h"

namespace strata::cpu {

namespace {
// fp32 copy of the first n elements of a bf16 buffer.
std::vector<float> widen(const uint16_t* x, int64_t n) {
  std::vector<float> out(size_t(n > 0 ? n : 0));
  for (int64_t i = 0; i < n; ++i) out[size_t(i)] = bf16_to_f32(x[i]);
  return out;
}
}  // namespace

void attention_forward_bf16(float* out, float* lse, const uint16_t* q, const uint16_t* k, const uint16_t* v,
                            int64_t B, int64_t Tq, int64_t Tk, int64_t Hq, int64_t Hkv, int64_t hd, float scale,
                            int64_t k_bstride, int64_t k_tstride, int64_t v_bstride, int64_t v_tstride) {
  STRATA_CHECK(B >= 0 && Tq >= 0 && Tk >= Tq && Hkv > 0 && hd > 0,
               "attention_forward_bf16: bad shape (B={}, Tq={}, Tk={}, Hkv={}, hd={})", B, Tq, Tk, Hkv, hd);
  if (B == 0 || Tq == 0) return;
  // Elements in use: the last key row of the last batch ends at (B-1)*bstride + (Tk-1)*tstride + Hkv*hd.
  const auto qf = widen(q, B * Tq * Hq * hd);
  const auto kf = widen(k, (B - 1) * k_bstride + (Tk - 1) * k_tstride + Hkv * hd);
  const auto vf = widen(v, (B - 1) * v_bstride + (Tk - 1) * v_tstride + Hkv * hd);
  attention_forward(out, lse, qf.data(), kf.data(), vf.data(), B, Tq, Tk, Hq, Hkv, hd, hd, scale, k_bstride,
                    k_tstride, v_bstride, v_tstride);
}

}  // namespace strata::cpu
