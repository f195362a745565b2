#include "interop/hf_arch.h"

#include "core/error.h"

namespace strata {

const std::vector<HfArchInfo>& hf_archs() {
  static const std::vector<HfArchInfo> table = {
      {HfArch::llama, "LlamaForCausalLM", "llama"},
      {HfArch::mixtral, "MixtralForCausalLM", "mixtral"},
      {HfArch::mamba, "MambaForCausalLM", "mamba"},
      {HfArch::mamba2, "Mamba2ForCausalLM", "mamba2"},
      {HfArch::jamba, "JambaForCausalLM", "jamba"},
      {HfArch::deepseek_v3, "DeepseekV3ForCausalLM", "deepseek_v3"},
  };
  return table;
}

const HfArchInfo& hf_arch_info(HfArch a) {
  for (auto& i : hf_archs())
    if (i.arch == a) return i;
  STRATA_CHECK(false, "unknown HfArch {}", int(a));
}

std::optional<HfArch> hf_arch_by_class(std::string_view class_name) {
  for (auto& i : hf_archs())
    if (class_name == i.class_name) return i.arch;
  return std::nullopt;
}

std::optional<HfArch> hf_arch_by_model_type(std::string_view model_type) {
  for (auto& i : hf_archs())
    if (model_type == i.model_type) return i.arch;
  return std::nullopt;
}

std::string hf_arch_list() {
  std::string s;
  for (auto& i : hf_archs()) s += (s.empty() ? "" : ", ") + std::string(i.class_name);
  return s;
}

}  // namespace strata
