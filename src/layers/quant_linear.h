#pragma once
// Weight-only quantised linear layers at inference (issue 13): which of a model's weights are held
// in int8 / int4 (kernels/quant_weight.h) and where, so that layers/linear.h's linear_forward can
// send a product through quant_linear_forward instead of the fp32 GEMM.
//
// A QuantizedLinears belongs to one ParamStore. It finds a weight by its place in the store's flat
// buffer (an offset, so it survives ParamStore::to_device), and a slice of rows of one (Mamba's
// in_proj split into x and z, say) as rows of the same quantised matrix. The fp32 values of the
// quantised weights stay in the flat buffer as their dequantised values, so a product that does not
// come here (MLA's absorbed decode, the MoE experts' grouped GEMMs) computes with the same weights.
// Set on a model (Model::set_quantized), it makes the model inference-only.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/params.h"
#include "kernels/quant_weight.h"

namespace strata {

// One quantised weight in host memory: what a checkpoint stores and the quantiser produces.
struct QuantTensor {
  std::string name;  // the parameter's name, e.g. "layers.3.mixer.q_proj.weight"
  int bits = 0;      // 8 or 4
  int64_t N = 0, K = 0;  // the weight's shape [N, K]
  std::vector<uint8_t> q;
  std::vector<float> scales;
  QuantWeight view() const { return {bits, N, K, q.data(), scales.data()}; }
};

class QuantizedLinears {
 public:
  explicit QuantizedLinears(const ParamStore& ps) : ps_(&ps) {}
  // Adds t (a copy on the store's device); its name must be a 2-D parameter of the store with shape
  // [t.N, t.K] and the byte counts must match the format (InputError otherwise).
  void add(const QuantTensor& t);
  // The quantised weight at `w` (a pointer into the store's flat buffer: a weight, or rows of one)
  // as a [OC, IC] matrix on the store's device; nullopt-like false when w is not a quantised weight.
  // int8_acts (when given): whether this weight's products take int8 activations.
  bool find(const float* w, int64_t IC, int64_t OC, QuantWeight& out, bool* int8_acts = nullptr) const;
  // Points at ps (the same store after its owner moved) and moves the quantised bytes to its device
  // when it has moved (once; a no-op otherwise).
  void follow_store(const ParamStore& ps);
  int64_t count() const { return int64_t(entries_.size()); }
  int64_t bytes() const;  // quantised bytes + scales
  int64_t weights() const;  // elements of the quantised weights (N x K summed)
  bool holds(const std::string& name) const;
  int bits() const;         // the widest bits among the weights (8 when any is int8), 0 when empty
  int fewest_bits() const;  // the narrowest (4 when any is int4), 0 when empty
  // Which weights' products quantise their activations to int8 per 32 inputs (kernels/cpu/quant_gemm.h,
  // "int8 activations": the VNNI path) instead of keeping them fp32: those whose name `which` accepts
  // (none by default: a second numeric mode, so off unless asked; models/quantize.h decides which).
  void set_int8_activations(const std::function<bool(const std::string& name)>& which);
  bool int8_activations() const;  // any weight takes int8 activations

 private:
  struct Entry {
    std::string name;
    int bits = 0;
    int64_t offset = 0, N = 0, K = 0;
    DeviceArray<uint8_t> q;
    DeviceArray<float> scales;
    bool int8_acts = false;
  };
  const ParamStore* ps_;
  std::vector<Entry> entries_;  // sorted by offset
};

}  // namespace strata
