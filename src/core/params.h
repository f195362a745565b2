#pragma once
// All parameters of a model live in one flat fp32 buffer with named views (llm.c's
// malloc_and_point_parameters); gradients and AdamW state mirror it, so the optimizer is one fused
// loop, a gradient all-reduce is one call and a checkpoint is a list of views.
// The buffers are built and initialised on the host; to_device(cuda) then moves them, after which
// data()/grad()/flat() are device pointers (host code reads them through host_flat()).
#include <functional>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/rng.h"
#include "core/tensor.h"

namespace strata {

// How a parameter is initialised. `fill` receives the parameter's storage and a generator seeded
// from (model seed, parameter index), so initialisation does not depend on declaration order.
struct Init {
  std::function<void(float* p, int64_t n, Rng& rng)> fill;
  static Init zeros();
  static Init constant(float v);
  static Init normal(float std);
  static Init uniform(float lo, float hi);
};

struct ParamRef {
  int index = -1;
  bool valid() const { return index >= 0; }
};

struct ParamInfo {
  std::string name;  // Hugging Face style, e.g. "layers.3.mixer.in_proj.weight"
  Shape shape;
  int64_t offset = 0, numel = 0;
  bool decay = true;  // weight decay applies (matrices); not for norms, biases, A_log, D, dt_bias
  Init init;
};

class ParamStore {
 public:
  ParamRef add(const std::string& name, Shape shape, Init init, bool decay);
  // Allocates the buffers (params, grads) on the host and initialises every parameter from `seed`
  // (or leaves them zero when init is false: the caller is about to load every value).
  void allocate(uint64_t seed, bool init = true);
  // Moves params and grads (and the bf16 shadow, as it is) to device d (values kept). Pointers taken
  // before are invalidated.
  void to_device(Device d);
  Device device() const { return data_.device(); }
  bool allocated() const { return !data_.empty() || infos_.empty(); }

  float* data(ParamRef r) { return data_.data() + infos_.at(r.index).offset; }
  const float* data(ParamRef r) const { return data_.data() + infos_.at(r.index).offset; }
  float* grad(ParamRef r) { return grad_.data() + infos_.at(r.index).offset; }
  const ParamInfo& info(ParamRef r) const { return infos_.at(r.index); }

  const std::vector<ParamInfo>& infos() const { return infos_; }
  int find(const std::string& name) const;  // -1 if absent
  int64_t numel() const { return total_; }
  float* flat() { return data_.data(); }
  float* flat_grad() { return grad_.data(); }
  const float* flat() const { return data_.data(); }
  std::vector<float> host_flat() const { return data_.to_host(); }        // a host copy, any device
  std::vector<float> host_flat_grad() const { return grad_.to_host(); }
  void set_flat_from_host(const float* src);                               // numel() floats
  std::vector<uint8_t> decay_mask() const;  // one byte per element
  void zero_grad();

  // bf16 mixed precision (train.precision: bf16): a bf16 copy of the whole flat buffer, same layout,
  // on the parameters' device, that the bf16 GEMMs read. The fp32 values stay the master copy (the
  // optimizer updates them) and the shadow is derived from them, so it is never checkpointed.
  // The store only holds the shadow's memory: casting into it is an op (a kernel), which core does
  // not call, so enable_bf16_shadow / refresh_bf16_shadow live above the kernels, in layers/linear.h.
  // The shadow is stale after a write to the fp32 values until that refresh: whoever writes through
  // data()/flat() (the optimizer step, a checkpoint restore) refreshes. to_device moves the shadow
  // with the values, and set_flat_from_host rounds the new host values into it, so both keep it
  // current.
  void allocate_bf16_shadow();  // once, on the parameters' device; contents undefined until refreshed
  bool has_bf16_shadow() const { return shadow_on_; }
  uint16_t* bf16_shadow() { return shadow_.data(); }  // the flat shadow (numel() values); null without one
  // The shadow of a pointer into the flat fp32 buffer (a weight, or a slice of one): same offset.
  // Throws when the shadow is not enabled or w is not inside the buffer.
  const uint16_t* bf16_of(const float* w) const;

 private:
  std::vector<ParamInfo> infos_;
  DeviceArray<float> data_, grad_;
  DeviceArray<uint16_t> shadow_;
  bool shadow_on_ = false;
  int64_t total_ = 0;
};

}  // namespace strata
