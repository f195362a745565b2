#include "interop/hf_names.h"

#include <cctype>
#include <string_view>

#include "core/error.h"

namespace strata {
namespace {

// A row maps strata "<block>.<rest>" to Hugging Face "<module>.<rest'>" inside decoder layer j.
// "{e}" stands for an expert index in both patterns.
struct Rename {
  const char* strata;
  const char* hf;
  HfSource::Kind kind = HfSource::whole;
};

struct ArchTable {
  HfArch arch;
  std::vector<const char*> embed;  // first: what save_pretrained writes; then aliases
  const char* final_norm;
  const char* lm_head;
  const char* layer;  // prefix of decoder layer j, "{j}" replaced
  int per_layer;      // strata sublayers per decoder layer
  std::vector<const char*> norms;  // per sublayer slot: the norm before the mixer, before the FFN
  // strata block -> the Hugging Face module that holds it (rows the renames do not cover keep <rest>)
  std::vector<std::pair<const char*, const char*>> modules;
  std::vector<Rename> renames;  // checked first; several rows for one strata name = alternatives
};

// Mixtral's experts as transformers 5.24 saves them (per-expert w1 = gate, w3 = up, w2 = down, under
// block_sparse_moe), then as transformers 5 holds them in memory (fused, under mlp).
const std::vector<Rename> kMixtralMoe = {
    {"moe.gate.weight", "block_sparse_moe.gate.weight"},
    {"moe.gate.weight", "mlp.gate.weight"},
    {"moe.experts.{e}.gate_proj.weight", "block_sparse_moe.experts.{e}.w1.weight"},
    {"moe.experts.{e}.gate_proj.weight", "mlp.experts.gate_up_proj", HfSource::fused_gate},
    {"moe.experts.{e}.up_proj.weight", "block_sparse_moe.experts.{e}.w3.weight"},
    {"moe.experts.{e}.up_proj.weight", "mlp.experts.gate_up_proj", HfSource::fused_up},
    {"moe.experts.{e}.down_proj.weight", "block_sparse_moe.experts.{e}.w2.weight"},
    {"moe.experts.{e}.down_proj.weight", "mlp.experts.down_proj", HfSource::fused_down},
};

const std::vector<Rename> kJambaMoe = {
    {"moe.gate.weight", "feed_forward.router.weight"},
    {"moe.experts.{e}.gate_proj.weight", "feed_forward.experts.{e}.gate_proj.weight"},
    {"moe.experts.{e}.gate_proj.weight", "feed_forward.experts.gate_up_proj", HfSource::fused_gate},
    {"moe.experts.{e}.up_proj.weight", "feed_forward.experts.{e}.up_proj.weight"},
    {"moe.experts.{e}.up_proj.weight", "feed_forward.experts.gate_up_proj", HfSource::fused_up},
    {"moe.experts.{e}.down_proj.weight", "feed_forward.experts.{e}.down_proj.weight"},
    {"moe.experts.{e}.down_proj.weight", "feed_forward.experts.down_proj", HfSource::fused_down},
};

const std::vector<ArchTable>& tables() {
  static const std::vector<ArchTable> t = {
      {HfArch::llama, {"model.embed_tokens.weight"}, "model.norm.weight", "lm_head.weight", "model.layers.{j}.", 2,
       {"input_layernorm.weight", "post_attention_layernorm.weight"}, {{"self_attn", "self_attn"}, {"mlp", "mlp"}}, {}},
      {HfArch::mixtral, {"model.embed_tokens.weight"}, "model.norm.weight", "lm_head.weight", "model.layers.{j}.", 2,
       {"input_layernorm.weight", "post_attention_layernorm.weight"}, {{"self_attn", "self_attn"}}, kMixtralMoe},
      {HfArch::mamba, {"backbone.embeddings.weight", "backbone.embedding.weight"}, "backbone.norm_f.weight",
       "lm_head.weight", "backbone.layers.{j}.", 1, {"norm.weight"}, {{"mixer", "mixer"}}, {}},
      {HfArch::mamba2, {"backbone.embeddings.weight", "backbone.embedding.weight"}, "backbone.norm_f.weight",
       "lm_head.weight", "backbone.layers.{j}.", 1, {"norm.weight"}, {{"mixer", "mixer"}}, {}},
      {HfArch::jamba, {"model.embed_tokens.weight"}, "model.final_layernorm.weight", "lm_head.weight",
       "model.layers.{j}.", 2, {"input_layernorm.weight", "pre_ff_layernorm.weight"},
       {{"self_attn", "self_attn"}, {"mixer", "mamba"}, {"mlp", "feed_forward"}}, kJambaMoe},
      {HfArch::deepseek_v3, {"model.embed_tokens.weight"}, "model.norm.weight", "lm_head.weight", "model.layers.{j}.",
       2, {"input_layernorm.weight", "post_attention_layernorm.weight"}, {{"self_attn", "self_attn"}, {"mlp", "mlp"}},
       {}},
  };
  return t;
}

const ArchTable& table_of(HfArch a) {
  for (auto& t : tables())
    if (t.arch == a) return t;
  STRATA_CHECK(false, "no name table for architecture {}", int(a));
}

std::string replace_all(std::string s, std::string_view key, const std::string& value) {
  for (size_t p = s.find(key); p != std::string::npos; p = s.find(key, p + value.size())) s.replace(p, key.size(), value);
  return s;
}

// Matches `name` against a pattern with at most one "{e}" (a decimal integer); sets *e.
bool match(std::string_view pattern, std::string_view name, int64_t* e) {
  size_t p = pattern.find("{e}");
  if (p == std::string_view::npos) return pattern == name;
  std::string_view pre = pattern.substr(0, p), post = pattern.substr(p + 3);
  if (name.size() <= pre.size() + post.size() || name.substr(0, pre.size()) != pre ||
      name.substr(name.size() - post.size()) != post)
    return false;
  std::string_view digits = name.substr(pre.size(), name.size() - pre.size() - post.size());
  int64_t v = 0;
  for (char c : digits) {
    if (!std::isdigit(static_cast<unsigned char>(c)) || v > (int64_t(1) << 40)) return false;
    v = v * 10 + (c - '0');
  }
  *e = v;
  return true;
}

}  // namespace

int hf_sublayers_per_layer(HfArch arch) { return table_of(arch).per_layer; }

std::vector<HfSource> hf_sources(HfArch arch, const std::string& name) {
  const ArchTable& t = table_of(arch);
  std::vector<HfSource> out;
  if (name == "embed_tokens.weight") {
    for (auto* n : t.embed) out.push_back({n});
    return out;
  }
  if (name == "norm_f.weight") return {{t.final_norm}};
  if (name == "lm_head.weight") return {{t.lm_head}};
  // layers.{k}.<tail>
  const std::string lp = "layers.";
  size_t dot = name.find('.', lp.size());
  STRATA_CHECK(name.rfind(lp, 0) == 0 && dot != std::string::npos, "{}: not a strata parameter name", name);
  int64_t k = std::stoll(name.substr(lp.size(), dot - lp.size()));
  std::string tail = name.substr(dot + 1);
  const std::string layer = replace_all(t.layer, "{j}", std::to_string(k / t.per_layer));
  if (tail == "norm.weight") return {{layer + t.norms[size_t(k % t.per_layer)]}};
  for (auto& r : t.renames) {
    int64_t e = -1;
    if (!match(r.strata, tail, &e)) continue;
    out.push_back({layer + replace_all(r.hf, "{e}", std::to_string(e)), r.kind, e});
  }
  if (!out.empty()) return out;
  std::string block = tail.substr(0, tail.find('.'));
  for (auto& [sb, module] : t.modules)
    if (block == sb) return {{layer + module + tail.substr(block.size())}};
  throw Error(fmt::format("{}: parameter '{}' has no place in a {} checkpoint (no '{}' block there)",
                          hf_arch_info(arch).class_name, name, hf_arch_info(arch).class_name, block));
}

bool hf_tensor_is_buffer(const std::string& n) {
  static const std::string_view suffix = ".rotary_emb.inv_freq";
  return n.size() >= suffix.size() && n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace strata
