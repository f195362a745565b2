#include "core/params.h"

#include <algorithm>
#include <cstring>

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

void ParamStore::allocate(uint64_t seed) {
  data_ = DeviceArray<float>::zeros(size_t(total_), Device::cpu);
  grad_ = DeviceArray<float>::zeros(size_t(total_), Device::cpu);
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
}

void ParamStore::set_flat_from_host(const float* src) {
  copy_bytes(data_.data(), data_.device(), src, Device::cpu, size_t(total_) * sizeof(float));
}

}  // namespace strata
