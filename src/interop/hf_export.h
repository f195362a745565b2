#pragma once
// Writing a strata model as a Hugging Face model directory that transformers' from_pretrained
// loads: config.json (hf_config), model.safetensors (or shards + index; tensor names as
// transformers 5.24's save_pretrained writes them), generation_config.json, and tokenizer.json
// (+ a minimal tokenizer_config.json) when the model has a tokenizer.
#include <cstdint>
#include <string>

#include "infer/loaded_model.h"
#include "interop/hf_arch.h"
#include "interop/hf_import.h"

namespace strata {

struct HfExportOptions {
  std::string dtype = "float32";                // float32 | bfloat16 | float16
  uint64_t max_shard_bytes = uint64_t(5) << 30;  // shards as save_pretrained's default 5 GB
};

struct HfExportResult {
  HfArch arch = HfArch::llama;
  size_t tensors = 0;
  uint64_t bytes = 0;  // tensor data written
};

// Writes into out_dir (created if needed; model files there are replaced). The architecture is the
// one the model was imported from when it still fits, else the first that expresses it; a model
// no architecture expresses is refused (InputError saying why, per architecture).
HfExportResult export_hf(const LoadedModel& lm, const std::string& out_dir, const HfExportOptions& opts = {},
                         const HfLog& log = nullptr);

}  // namespace strata
