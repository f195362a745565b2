#include "train/config_hparams.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>

#include <fmt/format.h>

#include "core/error.h"
#include "train/config_load.h"

namespace strata {

namespace {

// The node at a dotted key ("model.attention.heads"); an undefined node if it is absent. (yaml-cpp's
// Node::operator= assigns through, so the walk recurses instead of rebinding one variable.)
YAML::Node lookup(const YAML::Node& node, const std::string& key) {
  const size_t dot = key.find('.');
  const YAML::Node child = node[key.substr(0, dot)];
  if (!child || dot == std::string::npos) return child;
  return lookup(child, key.substr(dot + 1));
}

}  // namespace

std::vector<std::string> default_hparam_keys() {
  return {"model.pattern", "model.d_model", "optim.lr",   "optim.weight_decay", "optim.warmup",
          "train.batch",   "train.seq",     "train.steps", "train.precision",   "train.seed"};
}

std::vector<HParam> hparams_of(const Config& cfg, const std::vector<std::string>& keys) {
  // to_yaml writes every key with its resolved value; the schema says what type each one is.
  const YAML::Node root = YAML::Load(to_yaml(cfg));
  const std::vector<ConfigKey> schema = config_schema();
  std::vector<HParam> out;
  for (const std::string& key : keys) {
    auto it = std::find_if(schema.begin(), schema.end(), [&](const ConfigKey& k) { return k.key == key; });
    if (it == schema.end()) {
      std::string valid;
      for (const ConfigKey& k : schema) valid += (valid.empty() ? "" : ", ") + k.key;
      throw InputError(fmt::format("hparams: '{}' is not a config key; valid keys: {}", key, valid));
    }
    const YAML::Node n = lookup(root, key);
    HParam h;
    h.name = key;
    const std::string text = n && n.IsScalar() ? n.Scalar() : "";
    if (it->type == "integer" || it->type == "number") {
      h.kind = HParam::number;
      h.num = text.empty() ? 0 : std::stod(text);
    } else if (it->type == "boolean") {
      h.kind = HParam::boolean;
      h.flag = text == "true";
    } else {
      h.kind = HParam::string;
      h.text = text;
    }
    out.push_back(std::move(h));
  }
  return out;
}

}  // namespace strata
