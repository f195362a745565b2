#pragma once
// Weight-only quantisation of a model for inference (issue 13): which weights, and applying a set
// of quantised weights to a model (strata quantize, --quantize at load, a quantised checkpoint).
//
// Quantised: the projections of every block, i.e. the 2-D parameters named *_proj.weight (attention
// q/k/v/o, MLA q_a/q_b/kv_a_proj_with_mqa/kv_b, Mamba in/x/dt/out, MLP and MoE expert gate/up/down).
// Kept fp32: the token embedding and the LM head (the largest matrices of a small model, and the
// most sensitive: llama.cpp keeps its output matrix at 6+ bits too), the MoE router (top-k among
// near ties), norms, conv1d, biases and the SSM parameters. At 4 bits a weight whose input size is
// not a multiple of 32 (Mamba's dt_proj with a small dt_rank) is kept at 8 bits instead.
#include <string>
#include <vector>

#include "layers/quant_linear.h"
#include "models/model.h"

namespace strata {

bool is_quantizable(const ParamInfo& p);

// The LM head on request (`--quantize-head`): lm_head.weight, or embed_tokens.weight when the
// embeddings are tied (the product reads it as the head; the lookup reads its dequantised values,
// the same numbers). Always int8, whatever `bits` (llama.cpp keeps its output matrix at 6+ bits):
// in a small model it is the largest matrix, so at decode it is most of the bytes read per token.
bool is_head_weight(const ParamInfo& p);
// Whether model runs its head quantised (a head weight among its quantised weights).
bool head_quantized(const Model& model);

// The quantisable weights of ps (read through host_flat), each at `bits` (8 or 4; see above for
// the 8-bit fallback), and the head at int8 when `head`. InputError for other bits.
std::vector<QuantTensor> quantize_weights(const ParamStore& ps, int bits, bool head = false);

// Makes `model` run with ts: each weight's dequantised values written into the flat buffer, and a
// QuantizedLinears on the model (Model::set_quantized). The model must not be quantised already
// and its parameters must be on the host (move them after). InputError for a tensor that does not
// fit the model (unknown name, wrong shape, not a quantisable weight, a byte count off the format).
void apply_quantized(Model& model, const std::vector<QuantTensor>& ts);

// quantize_weights + apply_quantized: `--quantize 8|4 [--quantize-head]` at load.
void quantize_model(Model& model, int bits, bool head = false);

// `--activations int8|fp32` at load: int8 runs the quantised products with int8 activations
// (QuantizedLinears::set_int8_activations); InputError for int8 on a model without quantised weights,
// or for another name.
void set_activations(Model& model, const std::string& activations);

}  // namespace strata
