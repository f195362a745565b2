#include "core/params.h"

#include <algorithm>
#include <cstring>

#include "core/dtype.h"
#include "core/error.h"

namespace strata {

Init Init::zeros() {
  return {[](float* p, int64_t n, Rng&) { std::fill(p, p + n, 0.0f); }};
}
Init Init::constant(float v) {
  return {[v](float* p, int64_t n, Rng&) { std::fill(p, p + n, v); }};
}
Init Init::normal(float std) {
  return {[std](float* p, int64_t n, Rng& r) {
    for (int64_t i = 0; i < n; ++i) p[i] = r.normal() * std;
  }};
}
Init Init::uniform(float lo, float hi) {
  return {[lo, hi](float* p, int64_t n, Rng& r) {
    for (int64_t i = 0; i < n; ++i) p[i] = lo + (hi - lo) * r.uniform();
  }};
}

ParamRef ParamStore::add(const std::string& name, Shape shape, Init init, bool decay) {
  STRATA_CHECK(data_.empty(), "parameter {} declared after allocation", name);
  STRATA_CHECK(find(name) < 0, "parameter {} declared twice", name);
  ParamInfo p;
  p.name = name;
  p.shape = std::move(shape);
  p.numel = 1;
  for (auto d : p.shape) p.numel *= d;
  // 16-float alignment keeps every view 64-byte aligned for vector loads.
  p.offset = total_;
  total_ += (p.numel + 15) & ~int64_t(15);
  p.decay = decay;
  p.init = std::move(init);
  infos_.push_back(std::move(p));
  return ParamRef{int(infos_.size()) - 1};
}

void ParamStore::allocate(uint64_t seed, bool init) {
  data_ = DeviceArray<float>::zeros(size_t(total_), Device::cpu);
  grad_ = DeviceArray<float>::zeros(size_t(total_), Device::cpu);
  if (!init) return;
  for (size_t i = 0; i < infos_.size(); ++i) {
    Rng rng(seed * 0x9E3779B97F4A7C15ull + i + 1);
    infos_[i].init.fill(data_.data() + infos_[i].offset, infos_[i].numel, rng);
  }
}

int ParamStore::find(const std::string& name) const {
  for (size_t i = 0; i < infos_.size(); ++i)
    if (infos_[i].name == name) return int(i);
  return -1;
}

std::vector<uint8_t> ParamStore::decay_mask() const {
  std::vector<uint8_t> m(size_t(total_), 0);
  for (auto& p : infos_)
    if (p.decay) std::fill(m.begin() + p.offset, m.begin() + p.offset + p.numel, 1);
  return m;
}

void ParamStore::zero_grad() { grad_.zero(); }

void ParamStore::to_device(Device d) {
  STRATA_CHECK(allocated(), "ParamStore::to_device before allocate");
  if (d == data_.device()) return;
  require_device(d, "parameters");
  data_ = data_.to(d);
  grad_ = grad_.to(d);
  // The shadow is a function of the values, which move unchanged: its bits move with them.
  if (shadow_on_) shadow_ = shadow_.to(d);
}

void ParamStore::set_flat_from_host(const float* src) {
  copy_bytes(data_.data(), data_.device(), src, Device::cpu, size_t(total_) * sizeof(float));
  if (!shadow_on_) return;
  // The new values are on the host already: round them there (core/dtype.h's f32_to_bf16, the
  // rounding the cast ops use) and copy the bf16 values over, so no op is needed here.
  std::vector<uint16_t> b(static_cast<size_t>(total_));
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < total_; ++i) b[size_t(i)] = f32_to_bf16(src[i]);
  copy_bytes(shadow_.data(), shadow_.device(), b.data(), Device::cpu, b.size() * sizeof(uint16_t));
}

void ParamStore::allocate_bf16_shadow() {
  STRATA_CHECK(allocated(), "ParamStore::allocate_bf16_shadow before allocate");
  if (!shadow_on_) shadow_ = DeviceArray<uint16_t>(size_t(total_), data_.device());
  shadow_on_ = true;
}

const uint16_t* ParamStore::bf16_of(const float* w) const {
  STRATA_CHECK(shadow_on_, "bf16 weights requested but the parameters have no bf16 shadow (enable_bf16_shadow)");
  // Compared as integers: pointers into different objects have no defined order.
  const auto base = reinterpret_cast<uintptr_t>(data_.data()), at = reinterpret_cast<uintptr_t>(w);
  STRATA_CHECK(at >= base && at < base + uintptr_t(total_) * sizeof(float) && (at - base) % sizeof(float) == 0,
               "bf16 weights requested for a pointer outside the flat parameter buffer (only ParamStore weights "
               "have a bf16 shadow)");
  return shadow_.data() + (at - base) / sizeof(float);
}

}  // namespace strata
