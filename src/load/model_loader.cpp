#include "load/model_loader.h"

#include <algorithm>
#include <filesystem>

#include "core/error.h"
#include "interop/hf_import.h"
#include "models/quantize.h"
#include "train/checkpoint.h"
#include "train/config_load.h"

namespace fs = std::filesystem;

namespace strata {

std::string resolve_checkpoint(const std::string& p, std::string* skipped) {
  if (skipped) skipped->clear();
  if (is_hf_model_dir(p)) return p;
  std::error_code ec;
  if (!fs::is_directory(p, ec)) {
    if (!fs::exists(p, ec)) throw InputError(fmt::format("checkpoint '{}' not found", p));
    return p;
  }
  std::string why;
  auto c = newest_good_checkpoint(p, &why);
  if (!c) throw InputError(fmt::format("no usable checkpoint in '{}'{}", p, why.empty() ? "" : ": " + why));
  if (skipped) *skipped = why;
  return *c;
}

LoadedModel load_model(const std::string& ckpt_path) {
  if (is_hf_model_dir(ckpt_path)) return load_hf_model(ckpt_path);
  Checkpoint ck = load_checkpoint(ckpt_path);
  LoadedModel lm;
  lm.config = parse_config(ck.config_yaml, ckpt_path + ":/config");
  lm.model = std::make_unique<Model>(lm.config.model, Model::Uninitialised{});  // every value is loaded next
  ParamStore& ps = lm.model->params();
  // A quantised checkpoint holds its quantised weights in ck.quant instead of ck.params.
  if (ck.params.size() + ck.quant.size() != ps.infos().size())
    throw InputError(fmt::format("checkpoint '{}' holds {} parameters{} but its config builds a model with {}", ckpt_path,
                                 ck.params.size() + ck.quant.size(),
                                 ck.quant.empty() ? "" : fmt::format(" ({} of them quantised)", ck.quant.size()),
                                 ps.infos().size()));
  for (auto& a : ck.params) {
    int i = ps.find(a.name);
    if (i < 0) throw InputError(fmt::format("checkpoint '{}': parameter '{}' is not in the model its config describes", ckpt_path, a.name));
    auto& info = ps.infos()[size_t(i)];
    if (info.shape != a.shape)
      throw InputError(fmt::format("checkpoint '{}': parameter '{}' has shape {}, expected {}", ckpt_path, a.name,
                                   shape_str(a.shape), shape_str(info.shape)));
    std::copy(a.data.begin(), a.data.end(), ps.flat() + info.offset);
  }
  if (!ck.quant.empty()) {
    try {
      apply_quantized(*lm.model, ck.quant);
    } catch (const InputError& e) {
      throw InputError(fmt::format("checkpoint '{}': {}", ckpt_path, e.what()));
    }
  }
  lm.step = ck.state.step;
  lm.tokenizer_json = std::move(ck.tokenizer_json);
  lm.hf_config_json = std::move(ck.hf_config_json);
  lm.tokenizer_config_json = std::move(ck.tokenizer_config_json);
  attach_vocab(lm, ckpt_path);
  return lm;
}

}  // namespace strata
