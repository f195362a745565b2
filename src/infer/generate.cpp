#include "infer/generate.h"

#include <algorithm>
#include <fstream>

#include "core/error.h"
#include "infer/decoder.h"

namespace strata {

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
