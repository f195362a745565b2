#include "infer/generate.h"

#include <algorithm>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "infer/decoder.h"
#include "interop/hf_import.h"
#include "train/checkpoint.h"
#include "train/config_load.h"

namespace strata {

LoadedModel load_model(const std::string& ckpt_path) {
  if (is_hf_model_dir(ckpt_path)) return load_hf_model(ckpt_path);
  Checkpoint ck = load_checkpoint(ckpt_path);
  LoadedModel lm;
  lm.config = parse_config(ck.config_yaml, ckpt_path + ":/config");
  lm.model = std::make_unique<Model>(lm.config.model, Model::Uninitialised{});  // every value is loaded next
  ParamStore& ps = lm.model->params();
  if (ck.params.size() != ps.infos().size())
    throw InputError(fmt::format("checkpoint '{}' holds {} parameters but its config builds a model with {}", ckpt_path,
                                 ck.params.size(), ps.infos().size()));
  for (auto& a : ck.params) {
    int i = ps.find(a.name);
    if (i < 0) throw InputError(fmt::format("checkpoint '{}': parameter '{}' is not in the model its config describes", ckpt_path, a.name));
    auto& info = ps.infos()[size_t(i)];
    if (info.shape != a.shape)
      throw InputError(fmt::format("checkpoint '{}': parameter '{}' has shape {}, expected {}", ckpt_path, a.name,
                                   shape_str(a.shape), shape_str(info.shape)));
    std::copy(a.data.begin(), a.data.end(), ps.flat() + info.offset);
  }
  lm.step = ck.state.step;
  lm.tokenizer_json = std::move(ck.tokenizer_json);
  lm.hf_config_json = std::move(ck.hf_config_json);
  attach_vocab(lm, ckpt_path);
  return lm;
}

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

std::vector<int32_t> generate(Model& model, const std::vector<int32_t>& prompt, const GenerateOptions& opts,
                              const std::function<void(int32_t)>& on_token) {
  STRATA_CHECK(!prompt.empty(), "generate: the prompt is empty");
  const int64_t V = model.vocab(), P = int64_t(prompt.size());
  Decoder dec(model, 1, P + opts.max_tokens, opts.decoder);
  std::vector<float> logits(static_cast<size_t>(V));
  dec.prefill(prompt.data(), P, logits.data());  // logits of the last prompt position
  Sampler sampler(opts.sampler);
  Rng rng(opts.seed);
  std::vector<int32_t> out;
  int32_t next = sampler.sample(logits.data(), V, rng);
  for (int i = 0; i < opts.max_tokens; ++i) {
    out.push_back(next);
    if (on_token) on_token(next);
    if (i + 1 == opts.max_tokens) break;
    if (std::find(opts.stop_ids.begin(), opts.stop_ids.end(), next) != opts.stop_ids.end()) break;
    dec.step(&next, logits.data());
    next = sampler.sample(logits.data(), V, rng);
  }
  return out;
}

std::vector<float> score(Model& model, const std::vector<int32_t>& ids, ScoreMode mode, const DecoderOptions& opts) {
  const int64_t V = model.vocab(), T = int64_t(ids.size());
  STRATA_CHECK(T > 0, "score: no tokens");
  std::vector<float> logits(size_t(T * V));
  if (mode == ScoreMode::forward) {
    const Device dev = model.params().device();
    Arena arena(dev);
    Ctx ctx{dev, &arena, false};
    model.forward_logits(ctx, logits.data(), ids.data(), 1, T, nullptr);
  } else {
    Decoder dec(model, 1, T, opts);
    for (int64_t t = 0; t < T; ++t) dec.step(&ids[size_t(t)], logits.data() + t * V);
  }
  return logits;
}

void write_npy(const std::string& path, const std::vector<float>& data, const std::vector<int64_t>& shape) {
  std::string shp = "(";
  for (auto d : shape) shp += std::to_string(d) + ",";
  if (shape.size() > 1) shp.pop_back();
  shp += ")";
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shp + ", }";
  // The magic, version, header length and header together are a multiple of 64 bytes, ending in '\n'.
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  std::ofstream f(path, std::ios::binary);
  if (!f) throw InputError(fmt::format("cannot write '{}'", path));
  f.write("\x93NUMPY\x01\x00", 8);
  uint16_t hl = uint16_t(header.size());
  f.write(reinterpret_cast<const char*>(&hl), 2);
  f.write(header.data(), std::streamsize(header.size()));
  f.write(reinterpret_cast<const char*>(data.data()), std::streamsize(data.size() * sizeof(float)));
  if (!f) throw InputError(fmt::format("failed writing '{}'", path));
}

}  // namespace strata
