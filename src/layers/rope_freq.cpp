// RoPE inverse-frequency tables, see rope_freq.h. The llama3 blend is evaluated in double on the
// fp32 default table; transformers evaluates it in fp32, so entries can differ by an ulp.
#include "layers/rope_freq.h"

#include <cmath>
#include <numbers>
#include <string>

#include "core/error.h"

namespace strata {
namespace {

std::string supported_list() {
  std::string s;
  for (const char* t : kRopeTypes) s += (s.empty() ? "" : ", ") + std::string(t);
  return s;
}

}  // namespace

std::vector<float> rope_default_inv_freq(int64_t rot, float theta) {
  STRATA_CHECK(rot >= 0 && rot % 2 == 0, "rope: rotary dims {} must be even and >= 0", rot);
  std::vector<float> f(size_t(rot / 2));
  // transformers: 1.0 / (base ** (arange(0, dim, 2).float() / dim)), every step in fp32.
  for (int64_t i = 0; i < rot / 2; ++i) {
    const float e = float(2 * i) / float(rot);
    f[size_t(i)] = 1.0f / std::pow(theta, e);
  }
  return f;
}

std::vector<float> rope_inv_freq(const AttentionConfig& a, int64_t rot) {
  const std::string& type = a.rope_type;
  if (!(a.rope_theta > 0))
    throw InputError(fmt::format("attention.rope_theta must be positive (got {})", a.rope_theta));
  if (type != "default" && type != "linear" && type != "llama3") {
    const bool known = type == "dynamic" || type == "yarn" || type == "longrope" || type == "proportional";
    throw InputError(fmt::format("attention.rope_type '{}' is {} (supported: {})", type,
                                 known ? "a transformers RoPE type strata does not implement" : "unknown",
                                 supported_list()));
  }
  std::vector<float> f = rope_default_inv_freq(rot, a.rope_theta);
  if (type == "default") return f;
  if (!(a.rope_factor > 0))
    throw InputError(fmt::format("attention.rope_factor must be positive for rope_type {} (got {})", type, a.rope_factor));
  if (type == "linear") {
    for (float& v : f) v /= a.rope_factor;  // transformers: inv_freq /= factor (fp32)
    return f;
  }
  // llama3 (transformers' _compute_llama3_parameters).
  const double lo = a.rope_low_freq_factor, hi = a.rope_high_freq_factor, old = a.rope_original_max_positions;
  if (!(lo > 0) || !(hi > lo) || !(old > 0))
    throw InputError(fmt::format(
        "rope_type llama3 needs 0 < attention.rope_low_freq_factor ({}) < attention.rope_high_freq_factor ({}) and "
        "attention.rope_original_max_positions ({}) > 0",
        lo, hi, a.rope_original_max_positions));
  const double factor = a.rope_factor, low_wavelen = old / lo, high_wavelen = old / hi;
  for (float& v : f) {
    const double inv = v, wavelen = 2.0 * std::numbers::pi / inv;
    if (wavelen < high_wavelen) continue;                    // high frequencies: unchanged
    if (wavelen > low_wavelen) {                             // low frequencies: interpolated positions
      v = float(inv / factor);
      continue;
    }
    const double smooth = (old / wavelen - lo) / (hi - lo);  // in between: blend of the two
    v = float((1.0 - smooth) * inv / factor + smooth * inv);
  }
  return f;
}

}  // namespace strata
