#include "models/quantize.h"

#include "core/error.h"
#include "kernels/cpu/quant_gemm.h"

namespace strata {

namespace {
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

bool is_quantizable(const ParamInfo& p) {
  return p.shape.size() == 2 && (ends_with(p.name, "_proj.weight") || ends_with(p.name, "_proj_with_mqa.weight"));
}

bool is_head_weight(const ParamInfo& p) {
  return p.shape.size() == 2 && (p.name == "lm_head.weight" || p.name == "embed_tokens.weight");
}

bool head_quantized(const Model& model) {
  if (!model.quantized()) return false;
  for (const ParamInfo& p : model.params().infos())
    if (is_head_weight(p) && model.quantized()->holds(p.name)) return true;
  return false;
}

std::vector<QuantTensor> quantize_weights(const ParamStore& ps, int bits, bool head) {
  if (bits != 8 && bits != 4) throw InputError(fmt::format("quantisation to {} bits: the choices are 8 and 4", bits));
  const std::vector<float> flat = ps.host_flat();
  const bool untied = ps.find("lm_head.weight") >= 0;
  std::vector<QuantTensor> out;
  for (const ParamInfo& p : ps.infos()) {
    const bool is_head = head && is_head_weight(p) && (p.name == "lm_head.weight" || !untied);
    if (!is_quantizable(p) && !is_head) continue;
    QuantTensor t;
    t.name = p.name;
    t.N = p.shape[0];
    t.K = p.shape[1];
    t.bits = is_head || (bits == 4 && t.K % kQuantGroup != 0) ? 8 : bits;
    t.q.resize(size_t(quant_bytes(t.bits, t.N, t.K)));
    t.scales.resize(size_t(quant_scales(t.bits, t.N, t.K)));
    cpu::quantize_weight(t.bits, flat.data() + p.offset, t.N, t.K, t.q.data(), t.scales.data());
    out.push_back(std::move(t));
  }
  return out;
}

void apply_quantized(Model& model, const std::vector<QuantTensor>& ts) {
  if (model.quantized()) throw InputError("this model is quantised already (int8/int4 weights); give an fp32 checkpoint");
  ParamStore& ps = model.params();
  STRATA_CHECK(ps.device() == Device::cpu, "apply_quantized: the parameters must be on the host (move them after)");
  auto q = std::make_unique<QuantizedLinears>(ps);
  for (const QuantTensor& t : ts) {
    const int i = ps.find(t.name);
    if (i >= 0 && !is_quantizable(ps.infos()[size_t(i)]) && !is_head_weight(ps.infos()[size_t(i)]))
      throw InputError(fmt::format("'{}' is stored quantised but it is not one of the weights strata quantises "
                                   "(the blocks' *_proj.weight, and the LM head)",
                                   t.name));
    q->add(t);  // checks the name, shape and byte counts
    cpu::dequantize_weight(t.view(), ps.flat() + ps.infos()[size_t(i)].offset);
  }
  model.set_quantized(std::move(q));
}

void set_activations(Model& model, const std::string& activations) {
  if (activations != "fp32" && activations != "int8")
    throw InputError(fmt::format("activations '{}': the choices are fp32 and int8", activations));
  const bool int8 = activations == "int8";
  if (!model.quantized()) {
    if (int8)
      throw InputError("int8 activations need quantised weights: a checkpoint written by strata quantize, or "
                       "--quantize 8|4 at load");
    return;
  }
  // MLA's kv_b_proj keeps fp32 activations: its decode step absorbs the weight into the query and the
  // output (fp32 products over the latent cache, layers/latent_attention.h), so rounding its input in the forward
  // alone would part the forward from the cached decode (train/infer parity).
  model.quantized()->set_int8_activations(
      [int8](const std::string& name) { return int8 && !ends_with(name, "kv_b_proj.weight"); });
}

void quantize_model(Model& model, int bits, bool head) {
  STRATA_CHECK(model.params().device() == Device::cpu, "quantize_model: the parameters must be on the host");
  apply_quantized(model, quantize_weights(model.params(), bits, head));
}

}  // namespace strata
