#pragma once
// The Hugging Face architectures strata reads and writes, by their transformers class names.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace strata {

enum class HfArch { llama, mixtral, mamba, mamba2, jamba, deepseek_v3 };

struct HfArchInfo {
  HfArch arch;
  const char* class_name;  // "LlamaForCausalLM": config.json "architectures"[0]
  const char* model_type;  // "llama": config.json "model_type"
};

const std::vector<HfArchInfo>& hf_archs();
const HfArchInfo& hf_arch_info(HfArch a);
std::optional<HfArch> hf_arch_by_class(std::string_view class_name);
std::optional<HfArch> hf_arch_by_model_type(std::string_view model_type);
// "LlamaForCausalLM, MixtralForCausalLM, ..." for error messages.
std::string hf_arch_list();

}  // namespace strata
