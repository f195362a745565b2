#include "interop/hf_export.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "interop/hf_config.h"
#include "interop/hf_names.h"
#include "interop/safetensors.h"

namespace fs = std::filesystem;

namespace strata {
namespace {

using Json = nlohmann::json;

void say(const HfLog& log, const std::string& line) {
  if (log) log(line);
}

void write_text(const fs::path& p, const std::string& text) {
  const fs::path tmp = p.string() + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << text;
    if (!f) throw InputError(fmt::format("cannot write '{}'", tmp.string()));
  }
  std::error_code ec;
  fs::rename(tmp, p, ec);
  if (ec) throw InputError(fmt::format("cannot write '{}': {}", p.string(), ec.message()));
}

StDtype st_dtype_of(const std::string& dtype) {
  if (dtype == "float32") return StDtype::F32;
  if (dtype == "bfloat16") return StDtype::BF16;
  if (dtype == "float16") return StDtype::F16;
  throw InputError(fmt::format("export dtype '{}' is not one of: float32, bfloat16, float16", dtype));
}

// generation_config.json as save_pretrained writes it from the model config's token ids.
Json generation_config(const Json& cfg) {
  Json g = Json::object();
  for (const char* k : {"bos_token_id", "eos_token_id", "pad_token_id"})
    if (cfg.contains(k) && !cfg[k].is_null()) g[k] = cfg[k];
  g["_from_model_config"] = true;
  g["transformers_version"] = "5.24.0";
  return g;
}

// What AutoTokenizer needs besides tokenizer.json: the fast tokenizer class and the special tokens
// named by the config's token ids.
Json tokenizer_config(const LoadedModel& lm, const Json& cfg) {
  Json t = {{"tokenizer_class", "PreTrainedTokenizerFast"}};
  if (!lm.tokenizer) return t;
  for (auto [id_key, tok_key] : {std::pair{"bos_token_id", "bos_token"}, {"eos_token_id", "eos_token"}, {"pad_token_id", "pad_token"}}) {
    if (!cfg.contains(id_key) || !cfg[id_key].is_number_integer()) continue;
    if (auto s = lm.tokenizer->id_to_token(cfg[id_key].get<int32_t>())) t[tok_key] = *s;
  }
  return t;
}

}  // namespace

HfExportResult export_hf(const LoadedModel& lm, const std::string& out_dir, const HfExportOptions& opts,
                         const HfLog& log) {
  const StDtype dtype = st_dtype_of(opts.dtype);
  const ModelConfig& m = lm.model->config();
  Json base;
  std::optional<HfArch> hint;
  if (!lm.hf_config_json.empty()) {
    base = parse_hf_json(lm.hf_config_json, "the stored Hugging Face config.json");
    hint = hf_config_from_json(base, "the stored Hugging Face config.json").arch;
  }
  HfExportResult res;
  res.arch = hf_arch_for(m, hint);
  const char* cls = hf_arch_info(res.arch).class_name;
  Json cfg = hf_config_to_json(m, res.arch, base, opts.dtype);
  // The exported config must import back to the same model: the mapping is checked both ways.
  HfConfig back = hf_config_from_json(cfg, "the exported config.json");
  auto layers = [](const ModelConfig& c) {
    std::string s;
    for (int i = 0; i < c.repeat; ++i) s += c.pattern;
    return s;
  };
  if (layers(back.model) != layers(m))
    throw Error(fmt::format("export as {}: the written config describes layers '{}', the model has '{}'", cls,
                            layers(back.model), layers(m)));

  const ParamStore& ps = lm.model->params();
  std::vector<StTensorOut> tensors;
  for (auto& p : ps.infos()) {
    std::vector<HfSource> srcs = hf_sources(res.arch, p.name);
    STRATA_CHECK(srcs.front().kind == HfSource::whole, "{}: the preferred HF name of '{}' is not a whole tensor", cls, p.name);
    tensors.push_back({srcs.front().name, dtype, std::vector<int64_t>(p.shape.begin(), p.shape.end()), ps.flat() + p.offset});
    res.bytes += uint64_t(p.numel) * (dtype == StDtype::F32 ? 4 : 2);
  }
  std::sort(tensors.begin(), tensors.end(), [](auto& a, auto& b) { return a.name < b.name; });
  res.tensors = tensors.size();

  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) throw InputError(fmt::format("cannot create '{}': {}", out_dir, ec.message()));
  say(log, fmt::format("writing {} as {}: {} tensors, {:.1f} MB of {}", out_dir, cls, res.tensors,
                       double(res.bytes) / 1e6, opts.dtype));
  write_safetensors_dir(out_dir, tensors, {{"format", "pt"}}, opts.max_shard_bytes);
  const fs::path d(out_dir);
  write_text(d / "config.json", cfg.dump(2) + "\n");
  write_text(d / "generation_config.json", generation_config(cfg).dump(2) + "\n");
  if (!lm.tokenizer_json.empty()) write_text(d / "tokenizer.json", lm.tokenizer_json);
  // The imported tokenizer_config.json goes back verbatim (its chat template, its special tokens);
  // without one, a minimal config naming the fast tokenizer class and the config's special tokens.
  if (!lm.tokenizer_config_json.empty()) {
    write_text(d / "tokenizer_config.json", lm.tokenizer_config_json);
  } else if (!lm.tokenizer_json.empty()) {
    write_text(d / "tokenizer_config.json", tokenizer_config(lm, cfg).dump(2) + "\n");
  }
  if (lm.tokenizer_json.empty()) {
    say(log, "note: no tokenizer stored with this model; the export has none");
  }
  return res;
}

}  // namespace strata
