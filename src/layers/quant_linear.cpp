#include "layers/quant_linear.h"

#include <algorithm>

#include "core/error.h"

namespace strata {

void QuantizedLinears::add(const QuantTensor& t) {
  const int i = ps_->find(t.name);
  if (i < 0) throw InputError(fmt::format("quantised weight '{}' is not a parameter of this model", t.name));
  const ParamInfo& info = ps_->infos()[size_t(i)];
  if (info.shape != Shape{t.N, t.K})
    throw InputError(fmt::format("quantised weight '{}' is [{}, {}] but the model's parameter is {}", t.name, t.N, t.K,
                                 shape_str(info.shape)));
  if ((t.bits != 8 && t.bits != 4) || (t.bits == 4 && t.K % kQuantGroup != 0))
    throw InputError(fmt::format("quantised weight '{}': {} bits at K = {} is not a valid format (8, or 4 with K a multiple of {})",
                                 t.name, t.bits, t.K, kQuantGroup));
  if (int64_t(t.q.size()) != quant_bytes(t.bits, t.N, t.K) || int64_t(t.scales.size()) != quant_scales(t.bits, t.N, t.K))
    throw InputError(fmt::format("quantised weight '{}': {} bytes and {} scales, expected {} and {} for int{} [{}, {}]",
                                 t.name, t.q.size(), t.scales.size(), quant_bytes(t.bits, t.N, t.K),
                                 quant_scales(t.bits, t.N, t.K), t.bits, t.N, t.K));
  for (const Entry& e : entries_)
    if (e.name == t.name) throw InputError(fmt::format("quantised weight '{}' given twice", t.name));
  const Device d = ps_->device();
  Entry e{t.name, t.bits, info.offset, t.N, t.K, DeviceArray<uint8_t>::from_host(t.q.data(), t.q.size(), d),
          DeviceArray<float>::from_host(t.scales.data(), t.scales.size(), d)};
  auto at = std::upper_bound(entries_.begin(), entries_.end(), e.offset, [](int64_t o, const Entry& x) { return o < x.offset; });
  entries_.insert(at, std::move(e));
}

void QuantizedLinears::set_int8_activations(const std::function<bool(const std::string& name)>& which) {
  for (Entry& e : entries_) e.int8_acts = which(e.name);
}

bool QuantizedLinears::int8_activations() const {
  return std::any_of(entries_.begin(), entries_.end(), [](const Entry& e) { return e.int8_acts; });
}

bool QuantizedLinears::find(const float* w, int64_t IC, int64_t OC, QuantWeight& out, bool* int8_acts) const {
  const float* base = ps_->flat();
  if (entries_.empty() || w < base || w >= base + ps_->numel()) return false;
  const int64_t off = w - base;
  auto it = std::upper_bound(entries_.begin(), entries_.end(), off, [](int64_t o, const Entry& x) { return o < x.offset; });
  if (it == entries_.begin()) return false;
  const Entry& e = *--it;
  if (off >= e.offset + e.N * e.K) return false;
  const int64_t rel = off - e.offset, row = rel / e.K;
  STRATA_CHECK(rel % e.K == 0 && IC == e.K && row + OC <= e.N,
               "quantised weight '{}' [{}, {}]: a product reads it as [{}, {}] from element {}, which is not whole rows",
               e.name, e.N, e.K, OC, IC, rel);
  STRATA_CHECK(e.q.device() == ps_->device(), "quantised weight '{}' is not on the parameters' device (follow_store)", e.name);
  out = {e.bits, OC, e.K, e.q.data() + quant_bytes(e.bits, row, e.K), e.scales.data() + quant_scales(e.bits, row, e.K)};
  if (int8_acts) *int8_acts = e.int8_acts;
  return true;
}

void QuantizedLinears::follow_store(const ParamStore& ps) {
  ps_ = &ps;
  const Device d = ps_->device();
  for (Entry& e : entries_)
    if (e.q.device() != d) {
      e.q = e.q.to(d);
      e.scales = e.scales.to(d);
    }
}

int64_t QuantizedLinears::bytes() const {
  int64_t b = 0;
  for (const Entry& e : entries_) b += int64_t(e.q.size()) + int64_t(e.scales.size() * sizeof(float));
  return b;
}

int64_t QuantizedLinears::weights() const {
  int64_t n = 0;
  for (const Entry& e : entries_) n += e.N * e.K;
  return n;
}

bool QuantizedLinears::holds(const std::string& name) const {
  return std::any_of(entries_.begin(), entries_.end(), [&](const Entry& e) { return e.name == name; });
}

int QuantizedLinears::bits() const {
  int b = 0;
  for (const Entry& e : entries_) b = std::max(b, e.bits);
  return b;
}

int QuantizedLinears::fewest_bits() const {
  int b = 0;
  for (const Entry& e : entries_) b = b == 0 ? e.bits : std::min(b, e.bits);
  return b;
}

}  // namespace strata
