// config.json <-> ModelConfig. One reader and one writer per architecture, side by side; a Keys
// object tracks which keys were understood so that the rest can be reported, never dropped silently.
#include "interop/hf_config.h"

#include <cmath>
#include <map>
#include <numeric>
#include <set>

#include "core/error.h"

namespace strata {
namespace {

using Json = nlohmann::json;

// transformers 5 writes non-finite floats as {"__float__": "Infinity"}; parse_hf_json maps Python's
// bare literals to the same form.
bool is_float_object(const Json& v) { return v.is_object() && v.size() == 1 && v.contains("__float__") && v["__float__"].is_string(); }

std::optional<double> as_number(const Json& v) {
  if (v.is_number()) return v.get<double>();
  if (is_float_object(v)) {
    const std::string s = v["__float__"].get<std::string>();
    if (s == "Infinity" || s == "inf") return INFINITY;
    if (s == "-Infinity" || s == "-inf") return -INFINITY;
    if (s == "NaN" || s == "nan") return NAN;
  }
  return std::nullopt;
}

// A float as JSON with its shortest decimal form (1e-05, not 9.999999747378752e-06).
Json num(float f) { return std::stod(fmt::format("{}", f)); }

std::string show(const Json& v) {
  std::string s = v.dump();
  return s.size() > 120 ? s.substr(0, 117) + "..." : s;
}

// Typed reads of config.json keys, remembering which keys were understood.
class Keys {
 public:
  Keys(const Json& j, std::string what, std::string cls) : j_(j), what_(std::move(what)), cls_(std::move(cls)) {}

  [[noreturn]] void fail(const std::string& key, const std::string& msg) const {
    auto it = j_.find(key);
    std::string val = it == j_.end() ? "absent" : show(*it);
    throw InputError(fmt::format("{}: '{}' = {}: {} ({})", what_, key, val, msg, cls_));
  }

  // Present and not null.
  bool has(const std::string& key) const {
    auto it = j_.find(key);
    return it != j_.end() && !it->is_null();
  }
  const Json& raw(const std::string& key) {
    used_.insert(key);
    static const Json null;
    auto it = j_.find(key);
    return it == j_.end() ? null : *it;
  }

  int64_t integer(const std::string& key, std::optional<int64_t> dflt) {
    const Json& v = raw(key);
    if (v.is_null()) {
      if (!dflt) fail(key, "required");
      return *dflt;
    }
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>() && std::abs(v.get<double>()) < 1e15)
      return int64_t(v.get<double>());
    fail(key, "expected an integer");
  }
  // A positive size that fits strata's int fields.
  int size(const std::string& key, std::optional<int64_t> dflt) {
    int64_t v = integer(key, dflt);
    if (v <= 0 || v > (int64_t(1) << 30)) fail(key, "expected a positive size");
    return int(v);
  }
  double number(const std::string& key, std::optional<double> dflt) {
    const Json& v = raw(key);
    if (v.is_null()) {
      if (!dflt) fail(key, "required");
      return *dflt;
    }
    auto d = as_number(v);
    if (!d) fail(key, "expected a number");
    return *d;
  }
  bool boolean(const std::string& key, bool dflt) {
    const Json& v = raw(key);
    if (v.is_null()) return dflt;
    if (!v.is_boolean()) fail(key, "expected true or false");
    return v.get<bool>();
  }
  std::string string(const std::string& key, const std::string& dflt) {
    const Json& v = raw(key);
    if (v.is_null()) return dflt;
    if (!v.is_string()) fail(key, "expected a string");
    return v.get<std::string>();
  }

  // A feature strata does not implement: refused unless the key is absent, null or `ok` holds.
  void refuse_unless(const std::string& key, bool ok, const std::string& why) {
    used_.insert(key);
    if (has(key) && !ok) fail(key, why);
  }
  void require_false(const std::string& key, const std::string& what_feature) {
    refuse_unless(key, !boolean(key, false), what_feature + " not supported");
  }
  void require_silu(const std::string& key) {
    std::string act = string(key, "silu");
    if (act != "silu" && act != "swish") fail(key, "only silu (SwiGLU / Mamba's activation) is supported");
  }

  // Keys that do not change the computed function (provenance, runtime switches, initialisation).
  void quiet(std::initializer_list<const char*> keys) {
    for (const char* k : keys) used_.insert(k);
  }
  // The same, worth a note when present: one line naming those present and why they do not matter.
  void harmless(std::initializer_list<const char*> keys, const char* why) {
    std::string present;
    for (const char* k : keys) {
      used_.insert(k);
      if (has(k)) present += (present.empty() ? "" : ", ") + std::string(k);
    }
    if (!present.empty()) notes_.push_back(fmt::format("{}: {}", present, why));
  }
  void note(const std::string& key, const std::string& why) {
    used_.insert(key);
    notes_.push_back(fmt::format("{}: {}", key, why));
  }

  std::vector<std::string> finish() {
    for (auto it = j_.begin(); it != j_.end(); ++it)
      if (!used_.count(it.key())) notes_.push_back(fmt::format("{}: unknown to this importer, ignored (value {})", it.key(), show(*it)));
    return notes_;
  }

  const std::string& cls() const { return cls_; }

 private:
  const Json& j_;
  std::string what_, cls_;
  std::set<std::string> used_;
  std::vector<std::string> notes_;
};

// ---- shared pieces -------------------------------------------------------------------------------

void read_common(Keys& k, ModelConfig& m, int* layers, bool tie_default, const char* eps_key, double eps_default) {
  m.vocab = "ids";
  m.vocab_size = k.size("vocab_size", std::nullopt);
  m.d_model = k.size("hidden_size", std::nullopt);
  *layers = k.size("num_hidden_layers", std::nullopt);
  m.tie_embeddings = k.boolean("tie_word_embeddings", tie_default);
  m.norm_eps = float(k.number(eps_key, eps_default));
  if (!(m.norm_eps > 0)) k.fail(eps_key, "must be positive");
  m.init_std = float(k.number("initializer_range", m.init_std));
  if (!(m.init_std > 0)) m.init_std = 0.02f;
  k.quiet({"architectures", "model_type", "transformers_version", "_name_or_path", "torch_dtype", "dtype",
           "bos_token_id", "eos_token_id", "pad_token_id", "use_cache", "output_attentions", "output_hidden_states",
           "return_dict", "output_router_logits", "chunk_size_feed_forward", "use_return_dict",
           "max_position_embeddings", "initializer_range", "pretraining_tp"});
  k.harmless({"auto_map"}, "custom-code hooks; the weights follow the standard transformers class");
  k.refuse_unless("quantization_config", false, "quantized checkpoints are not supported; use a float checkpoint");
  k.refuse_unless("pruned_heads", k.raw("pruned_heads").empty(), "pruned heads are not supported");
}

void read_dropout(Keys& k, std::initializer_list<const char*> keys) {
  for (const char* key : keys)
    if (k.number(key, 0.0) != 0.0) k.note(key, "training-time noise; strata applies none");
}

// RoPE: transformers 5's "rope_parameters" {rope_type, rope_theta, ...}, or transformers 4's
// top-level "rope_theta" with "rope_scaling" {type | rope_type, factor, ...}. Types default, linear
// and llama3 (the ones the attention layers implement); every other type, and any parameter the
// type does not use, is refused by name.
void read_rope(Keys& k, AttentionConfig& a, double theta_default) {
  const Json& rp = k.raw("rope_parameters");
  const Json& rs = k.raw("rope_scaling");
  double theta = k.number("rope_theta", theta_default);
  if (!rp.is_null() && !rp.is_object()) k.fail("rope_parameters", "expected an object");
  if (!rs.is_null() && !rs.is_object()) k.fail("rope_scaling", "expected an object or null");
  // transformers 5 folds rope_scaling into rope_parameters; a file may hold either or both.
  Json params = rp.is_object() ? rp : Json::object();
  std::string where = rp.is_object() ? "rope_parameters" : "rope_scaling";
  if (rs.is_object())
    for (auto it = rs.begin(); it != rs.end(); ++it)
      if (!params.contains(it.key())) params[it.key()] = *it;
  if (rs.is_object() && !rp.is_object()) where = "rope_scaling";
  auto number_in = [&](const char* key, std::optional<double> dflt) {
    auto it = params.find(key);
    if (it == params.end() || it->is_null()) {
      if (!dflt) k.fail(where, fmt::format("'{}' is required for rope_type '{}'", key, a.rope_type));
      return *dflt;
    }
    auto d = as_number(*it);
    if (!d) k.fail(where, fmt::format("'{}' is not a number", key));
    return *d;
  };
  std::string type = "default";
  if (auto t = params.find("rope_type"); t != params.end() && t->is_string()) type = t->get<std::string>();
  else if (auto t2 = params.find("type"); t2 != params.end() && t2->is_string()) type = t2->get<std::string>();
  if (type != "default" && type != "linear" && type != "llama3")
    k.fail(where, fmt::format("RoPE type '{}' is not supported (supported: default, linear, llama3)", type));
  a.rope_type = type;
  theta = number_in("rope_theta", theta);
  if (!(theta > 0)) k.fail(where, "rope_theta must be positive");
  a.rope_theta = float(theta);
  std::set<std::string> allowed = {"rope_type", "type", "rope_theta"};
  if (type == "linear" || type == "llama3") {
    a.rope_factor = float(number_in("factor", std::nullopt));
    if (!(a.rope_factor > 0)) k.fail(where, "factor must be positive");
    allowed.insert("factor");
  }
  if (type == "llama3") {
    a.rope_low_freq_factor = float(number_in("low_freq_factor", std::nullopt));
    a.rope_high_freq_factor = float(number_in("high_freq_factor", std::nullopt));
    double old = number_in("original_max_position_embeddings", std::nullopt);
    if (!(a.rope_high_freq_factor > a.rope_low_freq_factor) || !(a.rope_low_freq_factor > 0) || !(old >= 1))
      k.fail(where, "llama3 needs 0 < low_freq_factor < high_freq_factor and original_max_position_embeddings >= 1");
    a.rope_original_max_positions = int(old);
    allowed.insert({"low_freq_factor", "high_freq_factor", "original_max_position_embeddings"});
  }
  // partial_rotary_factor = 1 is the default; anything else changes which channels rotate.
  if (auto f = params.find("partial_rotary_factor"); f != params.end()) {
    auto d = as_number(*f);
    if (!d || *d != 1.0) k.fail(where, "partial rotary embeddings (partial_rotary_factor != 1) are not supported");
    allowed.insert("partial_rotary_factor");
  }
  for (auto it = params.begin(); it != params.end(); ++it)
    if (!allowed.count(it.key()) && !it->is_null())
      k.fail(where, fmt::format("'{}' is not used by rope_type '{}' in strata; refusing rather than ignoring it", it.key(), type));
  if (k.has("partial_rotary_factor") && k.number("partial_rotary_factor", 1.0) != 1.0)
    k.fail("partial_rotary_factor", "partial rotary embeddings are not supported");
}

Json rope_json(const AttentionConfig& a) {
  Json r = {{"rope_type", a.rope_type}, {"rope_theta", num(a.rope_theta)}};
  if (a.rope_type == "linear" || a.rope_type == "llama3") r["factor"] = num(a.rope_factor);
  if (a.rope_type == "llama3") {
    r["low_freq_factor"] = num(a.rope_low_freq_factor);
    r["high_freq_factor"] = num(a.rope_high_freq_factor);
    r["original_max_position_embeddings"] = a.rope_original_max_positions;
  }
  return r;
}

void read_gqa(Keys& k, ModelConfig& m, std::optional<int64_t> kv_default, double theta_default) {
  auto& a = m.attention;
  a.kind = "gqa";
  a.heads = k.size("num_attention_heads", std::nullopt);
  a.kv_heads = k.has("num_key_value_heads") ? k.size("num_key_value_heads", std::nullopt)
                                            : int(kv_default.value_or(a.heads));
  k.raw("num_key_value_heads");
  if (a.heads % a.kv_heads != 0) k.fail("num_key_value_heads", fmt::format("must divide num_attention_heads ({})", a.heads));
  a.head_dim = k.has("head_dim") ? k.size("head_dim", std::nullopt) : 0;
  k.raw("head_dim");
  if (a.head_dim == 0) {
    if (m.d_model % a.heads != 0) k.fail("num_attention_heads", fmt::format("must divide hidden_size ({})", m.d_model));
    a.head_dim = m.d_model / a.heads;
  }
  if (a.head_dim % 2 != 0) k.fail("head_dim", "must be even for RoPE");
  read_rope(k, a, theta_default);
}

// Mixer-then-feed-forward layers: the strata pattern of one decoder layer pair, repeated.
void set_layers(ModelConfig& m, const std::string& per_layer, int layers) {
  m.pattern = per_layer;
  m.repeat = layers;
}

// ---- readers, one per architecture ---------------------------------------------------------------

void read_llama(Keys& k, HfConfig& h) {
  ModelConfig& m = h.model;
  read_common(k, m, &h.layers, false, "rms_norm_eps", 1e-6);
  k.require_silu("hidden_act");
  m.mlp.hidden = k.size("intermediate_size", std::nullopt);
  read_gqa(k, m, std::nullopt, 10000.0);
  k.require_false("attention_bias", "attention biases are");
  k.require_false("mlp_bias", "MLP biases are");
  read_dropout(k, {"attention_dropout"});
  set_layers(m, "*-", h.layers);
}

void read_mixtral(Keys& k, HfConfig& h) {
  ModelConfig& m = h.model;
  read_common(k, m, &h.layers, false, "rms_norm_eps", 1e-5);
  k.require_silu("hidden_act");
  m.mlp.hidden = m.moe.hidden = k.size("intermediate_size", std::nullopt);
  read_gqa(k, m, 8, 1e6);
  k.refuse_unless("sliding_window", false, "sliding-window attention is not supported");
  m.moe.experts = k.size("num_local_experts", 8);
  m.moe.top_k = k.size("num_experts_per_tok", 2);
  if (m.moe.top_k > m.moe.experts) k.fail("num_experts_per_tok", "exceeds num_local_experts");
  m.moe.renorm = true;  // MixtralTopKRouter divides the top-k probabilities by their sum
  m.moe.shared_experts = 0;
  m.moe.aux_loss = float(k.number("router_aux_loss_coef", 0.001));
  read_dropout(k, {"attention_dropout", "router_jitter_noise"});
  set_layers(m, "*E", h.layers);
}

void read_mamba_init(Keys& k, MambaConfig& mc) {
  mc.dt_min = float(k.number("time_step_min", 0.001));
  mc.dt_max = float(k.number("time_step_max", 0.1));
  mc.dt_init_floor = float(k.number("time_step_floor", 1e-4));
  // Initialisation only, kernel choices, and float32 residuals (strata is float32 throughout).
  k.quiet({"time_step_scale", "time_step_init_scheme", "rescale_prenorm_residual", "use_mambapy",
           "use_associative_scan", "use_mamba_kernels", "residual_in_fp32"});
}

int dt_rank(Keys& k, const std::string& key, int d_model) {
  const Json& v = k.raw(key);
  if (v.is_null() || (v.is_string() && v.get<std::string>() == "auto")) return (d_model + 15) / 16;
  return k.size(key, std::nullopt);
}

void read_mamba(Keys& k, HfConfig& h) {
  ModelConfig& m = h.model;
  read_common(k, m, &h.layers, true, "layer_norm_epsilon", 1e-5);
  k.require_silu("hidden_act");
  MambaConfig& mc = m.mamba;
  mc.version = 1;
  mc.d_state = k.size("state_size", 16);
  mc.d_conv = k.size("conv_kernel", 4);
  mc.expand = k.size("expand", 2);
  if (k.has("intermediate_size") && k.integer("intermediate_size", 0) != int64_t(mc.expand) * m.d_model)
    k.fail("intermediate_size", fmt::format("must equal expand * hidden_size = {}", int64_t(mc.expand) * m.d_model));
  k.raw("intermediate_size");
  mc.dt_rank = dt_rank(k, "time_step_rank", m.d_model);
  mc.conv_bias = k.boolean("use_conv_bias", true);
  mc.bias = k.boolean("use_bias", false);
  read_mamba_init(k, mc);
  set_layers(m, "M", h.layers);
}

void read_mamba2(Keys& k, HfConfig& h) {
  ModelConfig& m = h.model;
  read_common(k, m, &h.layers, false, "layer_norm_epsilon", 1e-5);
  k.require_silu("hidden_act");
  MambaConfig& mc = m.mamba;
  mc.version = 2;
  mc.d_state = k.size("state_size", 128);
  mc.d_conv = k.size("conv_kernel", 4);
  mc.expand = k.size("expand", 2);
  mc.head_dim = k.size("head_dim", 64);
  mc.ngroups = k.size("n_groups", 8);
  mc.chunk = k.size("chunk_size", 256);
  const int heads = k.size("num_heads", 128);
  if (int64_t(heads) * mc.head_dim != int64_t(mc.expand) * m.d_model)
    k.fail("num_heads", fmt::format("num_heads * head_dim = {} * {} must equal expand * hidden_size = {}", heads,
                                    mc.head_dim, int64_t(mc.expand) * m.d_model));
  if (heads % mc.ngroups != 0) k.fail("n_groups", fmt::format("must divide num_heads ({})", heads));
  mc.conv_bias = k.boolean("use_conv_bias", true);
  mc.bias = k.boolean("use_bias", false);
  // dt is clamped to time_step_limit after the softplus; the default (0, inf) clamps nothing.
  const Json& lim = k.raw("time_step_limit");
  if (!lim.is_null()) {
    auto lo = lim.is_array() && lim.size() == 2 ? as_number(lim[0]) : std::nullopt;
    auto hi = lim.is_array() && lim.size() == 2 ? as_number(lim[1]) : std::nullopt;
    if (!lo || !hi || *lo != 0.0 || !std::isinf(*hi))
      k.fail("time_step_limit", "only (0.0, inf), no clamping of dt, is supported");
  }
  k.quiet({"time_step_rank"});  // unused by Mamba-2
  if (k.boolean("norm_before_gate", false))
    k.note("norm_before_gate", "true, but transformers' Mamba2Mixer always gates before the norm; strata matches it");
  read_mamba_init(k, mc);
  set_layers(m, "M", h.layers);
}

// Jamba: decoder layer i mixes with attention iff i % attn_layer_period == attn_layer_offset (else
// Mamba-1 with RMSNorms on dt, B and C), and its feed-forward is a MoE (softmax top-k, gates not
// renormalised) iff num_experts > 1 and i % expert_layer_period == expert_layer_offset (else an MLP).
// Its attention has no positional encoding at all.
void read_jamba(Keys& k, HfConfig& h) {
  ModelConfig& m = h.model;
  read_common(k, m, &h.layers, false, "rms_norm_eps", 1e-6);
  k.require_silu("hidden_act");
  m.mlp.hidden = m.moe.hidden = k.size("intermediate_size", std::nullopt);
  auto& a = m.attention;
  a.kind = "gqa";
  a.heads = k.size("num_attention_heads", std::nullopt);
  a.kv_heads = k.size("num_key_value_heads", 8);
  if (a.heads % a.kv_heads != 0) k.fail("num_key_value_heads", fmt::format("must divide num_attention_heads ({})", a.heads));
  if (m.d_model % a.heads != 0) k.fail("num_attention_heads", fmt::format("must divide hidden_size ({})", m.d_model));
  a.head_dim = m.d_model / a.heads;
  a.rope = false;
  for (const char* key : {"rope_parameters", "rope_scaling", "rope_theta"})
    k.refuse_unless(key, false, "Jamba's attention has no positional encoding; a RoPE setting here is not understood");
  k.refuse_unless("sliding_window", false, "sliding-window attention is not supported");
  MambaConfig& mc = m.mamba;
  mc.version = 1;
  mc.inner_norms = true;
  mc.d_state = k.size("mamba_d_state", 16);
  mc.d_conv = k.size("mamba_d_conv", 4);
  mc.expand = k.size("mamba_expand", 2);
  mc.dt_rank = dt_rank(k, "mamba_dt_rank", m.d_model);
  mc.conv_bias = k.boolean("mamba_conv_bias", true);
  mc.bias = k.boolean("mamba_proj_bias", false);
  k.quiet({"use_mambapy", "use_associative_scan", "use_mamba_kernels"});
  const int experts = k.size("num_experts", 16);
  m.moe.experts = experts;
  m.moe.top_k = k.size("num_experts_per_tok", 2);
  if (experts > 1 && m.moe.top_k > experts) k.fail("num_experts_per_tok", "exceeds num_experts");
  m.moe.renorm = false;  // JambaTopKRouter keeps the top-k softmax weights as they are
  m.moe.shared_experts = 0;
  m.moe.aux_loss = float(k.number("router_aux_loss_coef", 0.001));
  read_dropout(k, {"attention_dropout"});
  const int ap = k.size("attn_layer_period", 8), ao = int(k.integer("attn_layer_offset", 4));
  const int ep = k.size("expert_layer_period", 2), eo = int(k.integer("expert_layer_offset", 1));
  if (ao < 0 || ao >= ap) k.fail("attn_layer_offset", fmt::format("must be in [0, attn_layer_period = {})", ap));
  if (eo < 0 || eo >= ep) k.fail("expert_layer_offset", fmt::format("must be in [0, expert_layer_period = {})", ep));
  std::string layers;
  for (int i = 0; i < h.layers; ++i) {
    layers += i % ap == ao ? '*' : 'M';
    layers += experts > 1 && i % ep == eo ? 'E' : '-';
  }
  // The shortest period that tiles the layer list keeps the YAML pattern readable.
  const int unit = std::lcm(ap, ep);
  if (h.layers % unit == 0 && unit < h.layers) set_layers(m, layers.substr(0, 2 * size_t(unit)), h.layers / unit);
  else set_layers(m, layers, 1);
}

void read_deepseek_v3(Keys& k, HfConfig& h) {
  ModelConfig& m = h.model;
  read_common(k, m, &h.layers, false, "rms_norm_eps", 1e-6);
  k.require_silu("hidden_act");
  m.mlp.hidden = k.size("intermediate_size", std::nullopt);
  auto& a = m.attention;
  a.kind = "mla";
  a.heads = k.size("num_attention_heads", std::nullopt);
  // transformers repeats the per-head keys num_heads / num_key_value_heads times: only equal counts work.
  if (k.has("num_key_value_heads") && k.integer("num_key_value_heads", 0) != a.heads)
    k.fail("num_key_value_heads", fmt::format("must equal num_attention_heads ({}) for MLA", a.heads));
  k.raw("num_key_value_heads");
  a.q_lora_rank = k.has("q_lora_rank") ? k.size("q_lora_rank", std::nullopt) : 0;
  k.raw("q_lora_rank");
  a.kv_lora_rank = k.size("kv_lora_rank", 512);
  a.qk_nope_head_dim = k.size("qk_nope_head_dim", 128);
  a.qk_rope_head_dim = k.size("qk_rope_head_dim", 64);
  a.v_head_dim = k.size("v_head_dim", 128);
  if (a.qk_rope_head_dim % 2 != 0) k.fail("qk_rope_head_dim", "must be even for RoPE");
  a.rope_interleave = k.boolean("rope_interleave", true);
  a.head_dim = a.qk_nope_head_dim + a.qk_rope_head_dim;
  a.kv_heads = a.heads;
  k.quiet({"head_dim", "qk_head_dim"});  // derived from qk_rope_head_dim / qk_nope_head_dim
  read_rope(k, a, 10000.0);
  k.require_false("attention_bias", "attention biases are");
  read_dropout(k, {"attention_dropout"});
  // DeepSeek-V3's MoE layers (sigmoid group-limited routing, e_score_correction_bias,
  // routed_scaling_factor, shared experts) are not implemented: every layer must be dense.
  const int64_t dense = k.has("first_k_dense_replace") ? k.integer("first_k_dense_replace", 0) : 3;
  k.raw("first_k_dense_replace");
  if (dense < h.layers && k.integer("n_routed_experts", 256) > 0)
    k.fail("first_k_dense_replace",
           fmt::format("layers {}..{} would be DeepSeek-V3 MoE layers (sigmoid group-limited routing, "
                       "e_score_correction_bias, routed_scaling_factor, shared experts), which are not supported; "
                       "only all-dense models (first_k_dense_replace >= num_hidden_layers = {}) import",
                       dense, h.layers - 1, h.layers));
  k.harmless({"n_routed_experts", "num_experts_per_tok", "n_group", "topk_group", "routed_scaling_factor",
              "norm_topk_prob", "n_shared_experts", "moe_intermediate_size", "router_aux_loss_coef", "topk_method",
              "scoring_func", "moe_layer_freq", "ep_size", "seq_aux", "aux_loss_alpha"},
             "MoE settings, unused: every layer is dense");
  for (const char* key : {"num_nextn_predict_layers", "num_mtp_layers"})
    if (k.integer(key, 0) > 0)
      k.note(key, "multi-token-prediction layers are not part of transformers' forward; their tensors are skipped");
  set_layers(m, "*-", h.layers);
}

// ---- writers -------------------------------------------------------------------------------------

std::string expanded(const ModelConfig& m) {
  std::string p;
  for (int r = 0; r < m.repeat; ++r) p += m.pattern;
  return p;
}

[[noreturn]] void cannot(HfArch arch, const std::string& why) {
  throw InputError(fmt::format("cannot export as {}: {}", hf_arch_info(arch).class_name, why));
}

// Layer count of a pattern made of `unit` repeated; throws otherwise.
int uniform_layers(HfArch arch, const ModelConfig& m, const std::string& unit) {
  const std::string p = expanded(m);
  bool ok = !p.empty() && p.size() % unit.size() == 0;
  for (size_t i = 0; ok && i < p.size(); ++i) ok = p[i] == unit[i % unit.size()];
  if (!ok) cannot(arch, fmt::format("its layer pattern '{}' is not '{}' repeated", p, unit));
  return int(p.size() / unit.size());
}

void write_common(Json& j, const ModelConfig& m, int layers, const char* eps_key) {
  j["vocab_size"] = m.vocab_size;
  j["hidden_size"] = m.d_model;
  j["num_hidden_layers"] = layers;
  j["tie_word_embeddings"] = m.tie_embeddings;
  j[eps_key] = num(m.norm_eps);
  j["initializer_range"] = num(m.init_std);
  j["hidden_act"] = "silu";
}

void write_gqa(HfArch arch, Json& j, const ModelConfig& m) {
  const auto& a = m.attention;
  if (a.kind != "gqa") cannot(arch, fmt::format("attention.kind is '{}', this architecture has GQA attention", a.kind));
  if (!a.rope) cannot(arch, "attention.rope is false; this architecture always applies RoPE");
  if (a.rope_dims != 0 && a.rope_dims != a.head_dim)
    cannot(arch, fmt::format("attention.rope_dims = {} (partial rotary); this architecture rotates all of head_dim {}",
                             a.rope_dims, a.head_dim));
  j["num_attention_heads"] = a.heads;
  j["num_key_value_heads"] = a.kv_heads;
  j["head_dim"] = a.head_dim;
  j.erase("rope_theta");
  j.erase("rope_scaling");
  j["rope_parameters"] = rope_json(a);
}

void write_llama(Json& j, const ModelConfig& m) {
  int layers = uniform_layers(HfArch::llama, m, "*-");
  write_common(j, m, layers, "rms_norm_eps");
  write_gqa(HfArch::llama, j, m);
  j["intermediate_size"] = m.mlp.hidden;
  j["attention_bias"] = false;
  j["mlp_bias"] = false;
  if (!j.contains("max_position_embeddings")) j["max_position_embeddings"] = 4096;
}

void write_mixtral(Json& j, const ModelConfig& m) {
  int layers = uniform_layers(HfArch::mixtral, m, "*E");
  if (!m.moe.renorm) cannot(HfArch::mixtral, "moe.renorm is false; Mixtral renormalises the top-k gates");
  if (m.moe.shared_experts != 0) cannot(HfArch::mixtral, "Mixtral has no shared experts (moe.shared_experts > 0)");
  write_common(j, m, layers, "rms_norm_eps");
  write_gqa(HfArch::mixtral, j, m);
  j["intermediate_size"] = m.moe.hidden;
  j["num_local_experts"] = m.moe.experts;
  j["num_experts_per_tok"] = m.moe.top_k;
  j["router_aux_loss_coef"] = num(m.moe.aux_loss);
  j["sliding_window"] = nullptr;
  if (!j.contains("max_position_embeddings")) j["max_position_embeddings"] = 4096;
}

void write_mamba_common(Json& j, const ModelConfig& m, int layers) {
  write_common(j, m, layers, "layer_norm_epsilon");
  j["state_size"] = m.mamba.d_state;
  j["conv_kernel"] = m.mamba.d_conv;
  j["expand"] = m.mamba.expand;
  j["use_conv_bias"] = m.mamba.conv_bias;
  j["use_bias"] = m.mamba.bias;
  j["time_step_min"] = num(m.mamba.dt_min);
  j["time_step_max"] = num(m.mamba.dt_max);
  j["time_step_floor"] = num(m.mamba.dt_init_floor);
}

void write_mamba(Json& j, const ModelConfig& m) {
  int layers = uniform_layers(HfArch::mamba, m, "M");
  if (m.mamba.version != 1) cannot(HfArch::mamba, "mamba.version is 2 (Mamba-2 exports as Mamba2ForCausalLM)");
  if (m.mamba.inner_norms) cannot(HfArch::mamba, "mamba.inner_norms is true (Jamba's Mamba); MambaMixer has none");
  write_mamba_common(j, m, layers);
  j["intermediate_size"] = m.mamba.expand * m.d_model;
  j["time_step_rank"] = m.mamba.dt_rank;
}

void write_mamba2(Json& j, const ModelConfig& m) {
  int layers = uniform_layers(HfArch::mamba2, m, "M");
  if (m.mamba.version != 2) cannot(HfArch::mamba2, "mamba.version is 1 (Mamba-1 exports as MambaForCausalLM)");
  write_mamba_common(j, m, layers);
  j["head_dim"] = m.mamba.head_dim;
  j["num_heads"] = m.mamba.expand * m.d_model / m.mamba.head_dim;
  j["n_groups"] = m.mamba.ngroups;
  j["chunk_size"] = m.mamba.chunk;
  j["time_step_limit"] = Json::array({0.0, Json{{"__float__", "Infinity"}}});
  j["time_step_rank"] = (m.d_model + 15) / 16;
}

// The (period, offset) with i % period == offset exactly for the layers in `on`; the smallest period.
std::optional<std::pair<int, int>> period_of(const std::vector<bool>& on) {
  const int L = int(on.size());
  for (int p = 1; p <= L + 1; ++p)
    for (int o = 0; o < p; ++o) {
      bool ok = true;
      for (int i = 0; i < L && ok; ++i) ok = on[size_t(i)] == (i % p == o);
      if (ok) return std::pair{p, o};
    }
  return std::nullopt;
}

void write_jamba(Json& j, const ModelConfig& m) {
  const HfArch J = HfArch::jamba;
  const std::string p = expanded(m);
  if (p.empty() || p.size() % 2 != 0) cannot(J, fmt::format("its layer pattern '{}' is not (mixer, feed-forward) pairs", p));
  const int L = int(p.size() / 2);
  std::vector<bool> attn(static_cast<size_t>(L), false), moe(static_cast<size_t>(L), false);
  for (int i = 0; i < L; ++i) {
    const char mix = p[size_t(2 * i)], ffn = p[size_t(2 * i + 1)];
    if ((mix != '*' && mix != 'M') || (ffn != '-' && ffn != 'E'))
      cannot(J, fmt::format("layer pair {} is '{}{}'; Jamba layers are (M or *) then (- or E)", i, mix, ffn));
    attn[size_t(i)] = mix == '*';
    moe[size_t(i)] = ffn == 'E';
  }
  auto ap = period_of(attn), ep = period_of(moe);
  if (!ap) cannot(J, fmt::format("its attention layers in '{}' are not every attn_layer_period-th layer", p));
  if (!ep) cannot(J, fmt::format("its MoE layers in '{}' are not every expert_layer_period-th layer", p));
  const bool any_attn = p.find('*') != std::string::npos, any_mamba = p.find('M') != std::string::npos;
  const bool any_moe = p.find('E') != std::string::npos, any_mlp = p.find('-') != std::string::npos;
  const auto& a = m.attention;
  if (any_attn) {
    if (a.kind != "gqa") cannot(J, fmt::format("attention.kind is '{}'; Jamba has GQA attention", a.kind));
    if (a.rope) cannot(J, "attention.rope is true; Jamba's attention has no positional encoding");
    if (a.head_dim * a.heads != m.d_model)
      cannot(J, fmt::format("attention.head_dim * heads = {} * {} != d_model {}; Jamba derives head_dim", a.head_dim,
                            a.heads, m.d_model));
  }
  if (any_mamba) {
    if (m.mamba.version != 1) cannot(J, "mamba.version is 2; Jamba's Mamba is Mamba-1");
    if (!m.mamba.inner_norms) cannot(J, "mamba.inner_norms is false; Jamba's Mamba normalises dt, B and C");
  }
  if (any_moe) {
    if (m.moe.renorm) cannot(J, "moe.renorm is true; Jamba keeps the top-k softmax weights as they are");
    if (m.moe.shared_experts != 0) cannot(J, "Jamba has no shared experts (moe.shared_experts > 0)");
    if (m.moe.experts < 2) cannot(J, "moe.experts < 2; transformers builds a plain MLP for one expert");
    if (any_mlp && m.moe.hidden != m.mlp.hidden)
      cannot(J, fmt::format("moe.hidden {} != mlp.hidden {}; Jamba has one intermediate_size", m.moe.hidden, m.mlp.hidden));
  }
  write_common(j, m, L, "rms_norm_eps");
  j["intermediate_size"] = any_moe ? m.moe.hidden : m.mlp.hidden;
  j["num_attention_heads"] = a.heads;
  j["num_key_value_heads"] = a.kv_heads;
  j["attn_layer_period"] = ap->first;
  j["attn_layer_offset"] = ap->second;
  j["expert_layer_period"] = ep->first;
  j["expert_layer_offset"] = ep->second;
  j["num_experts"] = any_moe ? m.moe.experts : 1;
  j["num_experts_per_tok"] = any_moe ? m.moe.top_k : 1;
  j["router_aux_loss_coef"] = num(m.moe.aux_loss);
  j["mamba_d_state"] = m.mamba.d_state;
  j["mamba_d_conv"] = m.mamba.d_conv;
  j["mamba_expand"] = m.mamba.expand;
  j["mamba_dt_rank"] = m.mamba.dt_rank;
  j["mamba_conv_bias"] = m.mamba.conv_bias;
  j["mamba_proj_bias"] = m.mamba.bias;
  for (const char* k : {"rope_parameters", "rope_scaling", "rope_theta", "head_dim"}) j.erase(k);
  if (!j.contains("max_position_embeddings")) j["max_position_embeddings"] = 4096;
}

void write_deepseek_v3(Json& j, const ModelConfig& m) {
  int layers = uniform_layers(HfArch::deepseek_v3, m, "*-");
  const auto& a = m.attention;
  if (a.kind != "mla") cannot(HfArch::deepseek_v3, fmt::format("attention.kind is '{}', DeepSeek-V3 has MLA", a.kind));
  if (a.softmax_scale != 0.0f &&
      std::abs(a.softmax_scale - 1.0f / std::sqrt(float(a.qk_nope_head_dim + a.qk_rope_head_dim))) > 1e-7f)
    cannot(HfArch::deepseek_v3, "attention.softmax_scale differs from 1/sqrt(qk head dim), which only yarn RoPE gives");
  write_common(j, m, layers, "rms_norm_eps");
  j["intermediate_size"] = m.mlp.hidden;
  j["num_attention_heads"] = a.heads;
  j["num_key_value_heads"] = a.heads;
  j["q_lora_rank"] = a.q_lora_rank > 0 ? Json(a.q_lora_rank) : Json(nullptr);
  j["kv_lora_rank"] = a.kv_lora_rank;
  j["qk_nope_head_dim"] = a.qk_nope_head_dim;
  j["qk_rope_head_dim"] = a.qk_rope_head_dim;
  j["v_head_dim"] = a.v_head_dim;
  j["rope_interleave"] = a.rope_interleave;
  j["attention_bias"] = false;
  j.erase("rope_theta");
  j.erase("rope_scaling");
  j["rope_parameters"] = rope_json(a);
  j["first_k_dense_replace"] = layers;  // every layer dense
  j.erase("head_dim");
  j.erase("qk_head_dim");
  if (!j.contains("max_position_embeddings")) j["max_position_embeddings"] = 4096;
  if (!j.contains("n_routed_experts")) j["n_routed_experts"] = 1;
  if (!j.contains("num_experts_per_tok")) j["num_experts_per_tok"] = 1;
  if (!j.contains("n_group")) j["n_group"] = 1;
  if (!j.contains("topk_group")) j["topk_group"] = 1;
}

struct ArchIo {
  HfArch arch;
  void (*read)(Keys&, HfConfig&);
  void (*write)(Json&, const ModelConfig&);
};
const ArchIo kIo[] = {
    {HfArch::llama, read_llama, write_llama},       {HfArch::mixtral, read_mixtral, write_mixtral},
    {HfArch::mamba, read_mamba, write_mamba},       {HfArch::mamba2, read_mamba2, write_mamba2},
    {HfArch::jamba, read_jamba, write_jamba},       {HfArch::deepseek_v3, read_deepseek_v3, write_deepseek_v3},
};
const ArchIo& io_of(HfArch a) {
  for (auto& i : kIo)
    if (i.arch == a) return i;
  STRATA_CHECK(false, "no config mapping for architecture {}", int(a));
}

}  // namespace

Json parse_hf_json(const std::string& text, const std::string& what) {
  // Python's json writes Infinity, -Infinity and NaN bare; rewrite them (outside strings) to
  // transformers 5's {"__float__": ...} objects, which plain JSON can hold.
  std::string s;
  s.reserve(text.size());
  bool in_str = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_str) {
      s.push_back(c);
      if (c == '\\' && i + 1 < text.size()) s.push_back(text[++i]);
      else if (c == '"') in_str = false;
      continue;
    }
    if (c == '"') in_str = true;
    bool matched = false;
    for (const char* lit : {"-Infinity", "Infinity", "NaN"}) {
      size_t n = std::char_traits<char>::length(lit);
      if (text.compare(i, n, lit) == 0) {
        s += fmt::format("{{\"__float__\": \"{}\"}}", lit);
        i += n - 1;
        matched = true;
        break;
      }
    }
    if (!matched) s.push_back(c);
  }
  try {
    Json j = Json::parse(s);
    if (!j.is_object()) throw InputError(fmt::format("{}: expected a JSON object", what));
    return j;
  } catch (const Json::exception& e) {
    throw InputError(fmt::format("{}: not valid JSON: {}", what, e.what()));
  }
}

HfConfig hf_config_from_json(const Json& j, const std::string& what) {
  HfConfig h;
  std::optional<HfArch> arch;
  std::string cls;
  if (auto it = j.find("architectures"); it != j.end() && !it->is_null()) {
    if (!it->is_array() || it->size() != 1 || !(*it)[0].is_string())
      throw InputError(fmt::format("{}: 'architectures' = {}: expected a list of one class name", what, show(*it)));
    cls = (*it)[0].get<std::string>();
    arch = hf_arch_by_class(cls);
    if (!arch)
      throw InputError(fmt::format("{}: 'architectures' = [\"{}\"]: architecture not supported (supported: {})", what,
                                   cls, hf_arch_list()));
  } else if (auto mt = j.find("model_type"); mt != j.end() && mt->is_string()) {
    arch = hf_arch_by_model_type(mt->get<std::string>());
    if (!arch)
      throw InputError(fmt::format("{}: 'model_type' = \"{}\": architecture not supported (supported: {})", what,
                                   mt->get<std::string>(), hf_arch_list()));
    cls = hf_arch_info(*arch).class_name;
  } else {
    throw InputError(fmt::format("{}: neither 'architectures' nor 'model_type' says which model this is", what));
  }
  if (auto mt = j.find("model_type"); mt != j.end() && mt->is_string() && *mt != hf_arch_info(*arch).model_type)
    throw InputError(fmt::format("{}: 'model_type' = \"{}\" contradicts 'architectures' = [\"{}\"] (expected \"{}\")",
                                 what, mt->get<std::string>(), cls, hf_arch_info(*arch).model_type));
  h.arch = *arch;
  Keys k(j, what, cls);
  io_of(h.arch).read(k, h);
  h.notes = k.finish();
  resolve(h.model);
  return h;
}

Json hf_config_to_json(const ModelConfig& m, HfArch arch, const Json& base, const std::string& dtype) {
  Json j = base.is_object() ? base : Json::object();
  // Keys of the base that describe another architecture's layout would confuse transformers.
  if (base.is_object()) {
    auto bt = base.find("model_type");
    if (bt != base.end() && *bt != hf_arch_info(arch).model_type) j = Json::object();
  }
  if (m.vocab == "bytes" && !j.contains("bos_token_id")) {
    j["bos_token_id"] = nullptr;
    j["eos_token_id"] = nullptr;
    j["pad_token_id"] = nullptr;
  }
  // strata-only settings, checked before the architecture's own writer: no Hugging Face mixer has them.
  const std::string layers = expanded(m);
  if (!m.mamba.selective && layers.find('M') != std::string::npos)
    cannot(arch, "mamba.selective is false (strata's non-selective S4D-like baseline: dt, B and C do not depend on "
                 "the input); no Hugging Face Mamba mixer expresses it");
  if (m.attention.window > 0 && layers.find('*') != std::string::npos)
    cannot(arch, fmt::format("attention.window is {} (strata's sliding-window attention); this architecture's "
                             "attention is full causal",
                             m.attention.window));
  io_of(arch).write(j, m);
  j["architectures"] = Json::array({hf_arch_info(arch).class_name});
  j["model_type"] = hf_arch_info(arch).model_type;
  j.erase("torch_dtype");
  j["dtype"] = dtype;
  j["transformers_version"] = "5.24.0";
  j["use_cache"] = true;
  return j;
}

HfArch hf_arch_for(const ModelConfig& m, std::optional<HfArch> hint) {
  std::vector<HfArch> order;
  if (hint) order.push_back(*hint);
  for (auto& i : hf_archs())
    if (!hint || i.arch != *hint) order.push_back(i.arch);
  std::string why;
  for (HfArch a : order) {
    try {
      Json j = hf_config_to_json(m, a, Json::object());
      return a;
    } catch (const InputError& e) {
      why += fmt::format("\n  {}", e.what());
    }
  }
  throw InputError(fmt::format("no Hugging Face architecture expresses this model (pattern '{}' x {}):{}", m.pattern,
                               m.repeat, why));
}

}  // namespace strata
