#include "infer/loaded_model.h"

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace strata {

void attach_vocab(LoadedModel& lm, const std::string& where) {
  const std::string& vocab = lm.config.model.vocab;
  if (vocab == "tokenizer") {
    if (lm.tokenizer_json.empty())
      throw InputError(fmt::format("'{}': model.vocab is 'tokenizer' but no tokenizer.json is stored with it", where));
    auto tok = std::make_shared<Tokenizer>(Tokenizer::from_json(lm.tokenizer_json, where + ":tokenizer.json"));
    if (tok->vocab_size() > lm.model->vocab())
      throw InputError(fmt::format("'{}': the tokenizer has {} ids but the model only {}", where, tok->vocab_size(),
                                   lm.model->vocab()));
    lm.tokenizer = std::move(tok);
  }
  lm.eos_ids.clear();
  if (!lm.hf_config_json.empty()) {
    auto j = nlohmann::json::parse(lm.hf_config_json, nullptr, false, true);
    if (j.is_object() && j.contains("eos_token_id")) {
      const auto& e = j["eos_token_id"];
      for (const auto& v : e.is_array() ? e : nlohmann::json::array({e}))
        if (v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() < lm.model->vocab())
          lm.eos_ids.push_back(v.get<int32_t>());
    }
  }
}

std::vector<int32_t> encode_text(const LoadedModel& lm, const std::string& text) {
  if (lm.tokenizer) return lm.tokenizer->encode(text, true);
  if (lm.config.model.vocab == "bytes") return encode_bytes(text);
  throw InputError("this model has no tokenizer (model.vocab: ids): give token ids instead of text");
}

std::string decode_text(const LoadedModel& lm, const std::vector<int32_t>& ids) {
  if (lm.tokenizer) return lm.tokenizer->decode(ids);
  if (lm.config.model.vocab == "bytes") return decode_bytes(ids);
  throw InputError("this model has no tokenizer (model.vocab: ids): it gives token ids, not text");
}

std::vector<int32_t> encode_bytes(const std::string& text) {
  std::vector<int32_t> ids;
  ids.reserve(text.size());
  for (unsigned char c : text) ids.push_back(int32_t(c));
  return ids;
}

std::string decode_bytes(const std::vector<int32_t>& ids) {
  std::string s;
  s.reserve(ids.size());
  for (int32_t i : ids) s.push_back(char(uint8_t(i)));
  return s;
}

}  // namespace strata
