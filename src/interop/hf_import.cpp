#include "interop/hf_import.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/error.h"
#include "infer/tokenizer.h"
#include "interop/hf_names.h"
#include "interop/safetensors.h"
#include "train/config_load.h"

namespace fs = std::filesystem;

namespace strata {
namespace {

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw InputError(fmt::format("cannot read '{}'", p.string()));
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void say(const HfLog& log, const std::string& line) {
  if (log) log(line);
}

std::string shape_of(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// Equal up to size-1 dimensions (a conv1d weight stored as [C, K] rather than [C, 1, K]).
bool same_shape(const std::vector<int64_t>& a, const Shape& b) {
  std::vector<int64_t> x, y;
  for (auto d : a)
    if (d != 1) x.push_back(d);
  for (auto d : b)
    if (d != 1) y.push_back(d);
  return x == y;
}

// Reads strata parameters out of the checkpoint, remembering which tensors were used. Fused expert
// tensors are read once and sliced per expert.
class WeightReader {
 public:
  WeightReader(const std::string& dir, HfArch arch) : st_(dir), arch_(arch), dir_(dir) {}

  void fill(const ParamInfo& p, float* dst) {
    std::vector<HfSource> srcs = hf_sources(arch_, p.name);
    const HfSource* src = nullptr;
    for (auto& s : srcs)
      if (st_.contains(s.name)) {
        src = &s;
        break;
      }
    if (!src) {
      std::string alts;
      for (size_t i = 1; i < srcs.size(); ++i) alts += (alts.empty() ? " (or " : ", ") + srcs[i].name;
      throw InputError(fmt::format("{}: tensor '{}'{}{} is missing; the {} config needs it as strata '{}' {}", dir_,
                                   srcs[0].name, alts, alts.empty() ? "" : ")", hf_arch_info(arch_).class_name, p.name,
                                   shape_str(p.shape)));
    }
    used_.insert(src->name);
    const StTensorInfo& info = st_.info(src->name);
    if (src->kind == HfSource::whole) {
      if (!same_shape(info.shape, p.shape))
        throw InputError(fmt::format("{}: tensor '{}' has shape {}, the config implies {} (strata '{}')", dir_, src->name,
                                     shape_of(info.shape), shape_str(p.shape), p.name));
      std::vector<float> v = st_.read_f32(src->name);
      std::copy(v.begin(), v.end(), dst);
      return;
    }
    // Fused experts: gate_up_proj [E, 2H, D] (gate rows first), down_proj [E, D, H].
    const std::vector<float>& all = fused(src->name);
    const int64_t rows = p.shape.at(0), cols = p.shape.at(1), e = src->expert;
    const bool gate_up = src->kind != HfSource::fused_down;
    std::vector<int64_t> want = {-1, gate_up ? 2 * rows : rows, cols};
    if (info.shape.size() != 3 || info.shape[1] != want[1] || info.shape[2] != want[2] || e >= info.shape[0])
      throw InputError(fmt::format("{}: fused expert tensor '{}' has shape {}, expected [E > {}, {}, {}] (strata '{}')",
                                   dir_, src->name, shape_of(info.shape), e, want[1], want[2], p.name));
    const int64_t per_expert = want[1] * cols;
    const int64_t row0 = src->kind == HfSource::fused_up ? rows : 0;
    const float* from = all.data() + e * per_expert + row0 * cols;
    std::copy(from, from + rows * cols, dst);
  }

  // Tensors not used by any parameter.
  std::vector<std::string> leftovers() const {
    std::vector<std::string> out;
    for (auto& n : st_.names())
      if (!used_.count(n)) out.push_back(n);
    return out;
  }
  std::vector<float> read(const std::string& name) const { return st_.read_f32(name); }
  size_t files() const { return st_.files().size(); }

 private:
  const std::vector<float>& fused(const std::string& name) {
    if (fused_name_ != name) {
      fused_ = st_.read_f32(name);
      fused_name_ = name;
    }
    return fused_;
  }

  SafetensorsCheckpoint st_;
  HfArch arch_;
  std::string dir_;
  std::set<std::string> used_;
  std::string fused_name_;
  std::vector<float> fused_;
};

// DeepSeek-V3 checkpoints carry multi-token-prediction layers after the last decoder layer
// (model.layers.{L}...); transformers skips them on load.
bool is_mtp_tensor(HfArch arch, int layers, const std::string& n) {
  if (arch != HfArch::deepseek_v3) return false;
  const std::string p = "model.layers.";
  if (n.rfind(p, 0) != 0) return false;
  size_t dot = n.find('.', p.size());
  if (dot == std::string::npos) return false;
  try {
    return std::stoll(n.substr(p.size(), dot - p.size())) >= layers;
  } catch (...) {
    return false;
  }
}

}  // namespace

bool is_hf_model_dir(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec) && fs::is_regular_file(fs::path(path) / "config.json", ec);
}

HfDir read_hf_dir(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw InputError(fmt::format("'{}' is not a directory", dir));
  const fs::path cfg = fs::path(dir) / "config.json";
  if (!fs::is_regular_file(cfg, ec))
    throw InputError(fmt::format("'{}' has no config.json (not a Hugging Face model directory)", dir));
  HfDir d;
  d.dir = dir;
  d.config_json = read_text(cfg);
  d.hf = hf_config_from_json(parse_hf_json(d.config_json, cfg.string()), cfg.string());
  // Kept verbatim for the chat template (ChatTemplate) and for export; read, not interpreted, here.
  const fs::path tok_cfg = fs::path(dir) / "tokenizer_config.json";
  if (fs::is_regular_file(tok_cfg, ec)) d.tokenizer_config_json = read_text(tok_cfg);
  // transformers >= 4.43 saves the template as chat_template.jinja beside the config, and that file
  // takes priority over the config's own entry: it goes into the stored config as its chat_template.
  const fs::path jinja = fs::path(dir) / "chat_template.jinja";
  if (fs::is_regular_file(jinja, ec)) {
    nlohmann::ordered_json j = nlohmann::ordered_json::object();
    if (!d.tokenizer_config_json.empty()) {
      j = nlohmann::ordered_json::parse(d.tokenizer_config_json, nullptr, false);
      if (j.is_discarded() || !j.is_object())
        throw InputError(fmt::format("'{}' is not a JSON object", tok_cfg.string()));
    }
    j["chat_template"] = read_text(jinja);
    d.tokenizer_config_json = j.dump(2) + "\n";
  }
  const fs::path tok = fs::path(dir) / "tokenizer.json";
  if (fs::is_regular_file(tok, ec)) {
    d.tokenizer_json = read_text(tok);
    try {
      Tokenizer t = Tokenizer::from_json(d.tokenizer_json, tok.string());
      if (t.vocab_size() > d.hf.model.vocab_size)
        d.hf.notes.push_back(fmt::format("tokenizer.json: {} ids but the embedding has {} rows; kept for export, not used "
                                         "(model.vocab: ids)",
                                         t.vocab_size(), d.hf.model.vocab_size));
      else
        d.hf.model.vocab = "tokenizer";
    } catch (const InputError& e) {
      d.hf.notes.push_back(fmt::format("tokenizer.json kept for export but not used (model.vocab: ids): {}", e.what()));
    }
  } else {
    d.hf.notes.push_back("no tokenizer.json: the model takes and gives token ids (model.vocab: ids)");
  }
  return d;
}

void load_hf_weights(const HfDir& d, Model& model, const HfLog& log) {
  const HfArch arch = d.hf.arch;
  const char* cls = hf_arch_info(arch).class_name;
  WeightReader r(d.dir, arch);
  ParamStore& ps = model.params();
  for (auto& p : ps.infos()) r.fill(p, ps.flat() + p.offset);
  // Every tensor must have been used, or be one transformers skips as well.
  std::vector<std::string> unplaced;
  int buffers = 0, mtp = 0;
  for (auto& n : r.leftovers()) {
    if (hf_tensor_is_buffer(n)) {
      ++buffers;
    } else if (is_mtp_tensor(arch, d.hf.layers, n)) {
      ++mtp;
    } else if (n == "lm_head.weight" && model.config().tie_embeddings) {
      say(log, "note: lm_head.weight is ignored: tie_word_embeddings is true, so the head is the embedding");
    } else {
      unplaced.push_back(n);
    }
  }
  if (buffers) say(log, fmt::format("note: skipped {} RoPE inv_freq buffer(s)", buffers));
  if (mtp) say(log, fmt::format("note: skipped {} multi-token-prediction tensor(s) (model.layers.{}+)", mtp, d.hf.layers));
  if (!unplaced.empty()) {
    std::string list;
    for (size_t i = 0; i < unplaced.size() && i < 8; ++i) list += (i ? ", " : "") + unplaced[i];
    if (unplaced.size() > 8) list += fmt::format(" (+{} more)", unplaced.size() - 8);
    throw InputError(fmt::format("{}: {} tensor(s) have no place in the {} model its config.json describes (a feature "
                                 "the config does not announce, e.g. biases, is not supported): {}",
                                 d.dir, unplaced.size(), cls, list));
  }
  int64_t n = 0;
  for (auto& p : ps.infos()) n += p.numel;
  say(log, fmt::format("loaded {} tensors ({} parameters) from {} safetensors file(s)", ps.infos().size(), n, r.files()));
}

LoadedModel load_hf_model(const std::string& dir, const HfLog& log) {
  HfDir d = read_hf_dir(dir);
  say(log, fmt::format("{}: {} with {} layers -> strata pattern '{}' x {}", dir, hf_arch_info(d.hf.arch).class_name,
                       d.hf.layers, d.hf.model.pattern, d.hf.model.repeat));
  for (auto& n : d.hf.notes) say(log, "note: " + n);
  LoadedModel lm;
  lm.config.model = d.hf.model;
  // The strict config loader validates the mapped config exactly as it will be reloaded from a checkpoint.
  lm.config = parse_config(to_yaml(lm.config), dir + "/config.json (mapped)");
  lm.model = std::make_unique<Model>(lm.config.model, Model::Uninitialised{});  // every value is loaded next
  load_hf_weights(d, *lm.model, log);
  lm.tokenizer_json = std::move(d.tokenizer_json);
  lm.hf_config_json = std::move(d.config_json);
  lm.tokenizer_config_json = std::move(d.tokenizer_config_json);
  attach_vocab(lm, dir);
  return lm;
}

Checkpoint import_hf(const std::string& dir, const HfLog& log) {
  LoadedModel lm = load_hf_model(dir, log);
  Checkpoint ck;
  ck.config_yaml = to_yaml(lm.config);
  const ParamStore& ps = lm.model->params();
  ck.params.reserve(ps.infos().size());
  for (auto& p : ps.infos())
    ck.params.push_back({p.name, p.shape, std::vector<float>(ps.flat() + p.offset, ps.flat() + p.offset + p.numel)});
  ck.tokenizer_json = std::move(lm.tokenizer_json);
  ck.hf_config_json = std::move(lm.hf_config_json);
  ck.tokenizer_config_json = std::move(lm.tokenizer_config_json);
  return ck;
}

void save_weights_only(const LoadedModel& lm, const std::string& path) {
  CheckpointView v;
  v.config_yaml = to_yaml(lm.config);
  const ParamStore& ps = lm.model->params();
  for (auto& p : ps.infos()) v.params.push_back({p.name, p.shape, ps.flat() + p.offset});
  v.state.step = lm.step;
  v.tokenizer_json = lm.tokenizer_json;
  v.hf_config_json = lm.hf_config_json;
  v.tokenizer_config_json = lm.tokenizer_config_json;
  save_checkpoint(path, v);
}

}  // namespace strata
