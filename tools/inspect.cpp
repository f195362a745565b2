#include "inspect.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>

#include "interop/hf_import.h"
#include "load/model_loader.h"
#include "train/config_load.h"

namespace fs = std::filesystem;

namespace strata {

static std::string human(double x) {
  if (x >= 1e9) return fmt::format("{:.2f}G", x / 1e9);
  if (x >= 1e6) return fmt::format("{:.2f}M", x / 1e6);
  if (x >= 1e3) return fmt::format("{:.1f}K", x / 1e3);
  return fmt::format("{:.0f}", x);
}

std::string inspect_model(const Model& model, int64_t T) {
  const ParamStore& ps = model.params();
  std::string out = fmt::format("{:>5}  {:<10} {:>10} {:>12} {:>14} {:>14}\n", "layer", "kind", "params", "FLOPs/tok",
                                "cache B/tok", "state B/seq");
  int64_t total_kv = 0, total_fixed = 0;
  for (size_t i = 0; i < model.layers().size(); ++i) {
    auto& L = model.layers()[i];
    std::string prefix = "layers." + std::to_string(i) + ".";
    int64_t n = 0;
    for (auto& p : ps.infos())
      if (p.name.compare(0, prefix.size(), prefix) == 0) n += p.numel;
    total_kv += L.block->cache_bytes_per_token();
    total_fixed += L.block->cache_bytes_fixed();
    out += fmt::format("{:>5}  {:<10} {:>10} {:>12} {:>14} {:>14}\n", i, std::string(1, L.kind) + " " + L.block->kind(),
                       human(double(n)), human(L.block->flops_per_token(T)), L.block->cache_bytes_per_token(),
                       L.block->cache_bytes_fixed());
  }
  int64_t total = 0;
  for (auto& p : ps.infos()) total += p.numel;
  const ModelConfig& c = model.config();
  out += fmt::format("\npattern '{}' x {} = '{}' ({} layers), d_model {}, vocab {}, {} head\n", c.pattern, c.repeat,
                     model.layer_pattern(), model.layers().size(), c.d_model, c.vocab_size,
                     c.tie_embeddings ? "tied" : "untied");
  out += fmt::format("parameters: {} ({})\n", total, human(double(total)));
  out += fmt::format("forward FLOPs per token at context {}: {} (training ~3x: {})\n", T,
                     human(model.flops_per_token(T)), human(3 * model.flops_per_token(T)));
  out += fmt::format("decode cache: {} bytes per token (KV) + {} bytes per sequence (SSM/conv state)\n", total_kv,
                     total_fixed);
  return out;
}

std::string inspect_report(const std::string& path, int64_t T) {
  if (is_hf_model_dir(path)) {  // imported on the fly: the weights are read, so a broken directory shows
    LoadedModel lm = load_model(path);
    return fmt::format("Hugging Face model {} (vocab: {})\n", path, lm.config.model.vocab) +
           inspect_model(*lm.model, T > 0 ? T : lm.config.train.seq);
  }
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError(fmt::format("'{}' not found", path));
  char sig[8] = {};
  f.read(sig, 8);
  bool hdf5 = f.gcount() == 8 && std::string(sig, 8) == "\x89HDF\r\n\x1a\n";
  // A .h5 path is a checkpoint whatever it holds: an empty or damaged one is refused by the checkpoint
  // reader, with its reason, rather than read as an (empty, hence default) YAML config.
  std::string ext = fs::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  if (hdf5 || ext == ".h5" || ext == ".hdf5") {
    LoadedModel lm = load_model(path);
    return fmt::format("checkpoint {} (step {})\n", path, lm.step) +
           inspect_model(*lm.model, T > 0 ? T : lm.config.train.seq);
  }
  Config cfg = load_config(path);
  Model model(cfg.model, cfg.train.seed);
  return fmt::format("config {}\n", path) + inspect_model(model, T > 0 ? T : cfg.train.seq);
}

}  // namespace strata
