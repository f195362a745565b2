// libFuzzer target for the OpenAI request parsing (serve/openai_request.h): any input is a request
// body, parsed as a completion and as a chat request. Each parse must either return a request within
// the limits or throw ApiError with a 400/404 status and a body that is itself valid JSON; any other
// exception, crash or sanitizer report is a bug. Built by -DSTRATA_FUZZ=ON with Clang (fuzz/run.sh
// 60 fuzz_openai_request); tests/test_openai_request.cpp replays the seed corpus without libFuzzer.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "serve/openai_request.h"

namespace {

void check_sampling(const strata::SamplingRequest& r, const strata::RequestLimits& l) {
  if (r.max_tokens < 1 || r.max_tokens > l.max_tokens) __builtin_trap();
  if (!(r.temperature >= 0 && r.temperature <= 2)) __builtin_trap();
  if (!(r.top_p > 0 && r.top_p <= 1) || r.top_k < 0) __builtin_trap();
  if (r.stop.size() > 4) __builtin_trap();
  for (const auto& s : r.stop)
    if (s.empty()) __builtin_trap();
  if (r.model != l.model) __builtin_trap();
}

void check_error(const strata::ApiError& e) {
  if (e.status != 400 && e.status != 404) __builtin_trap();
  const auto j = nlohmann::json::parse(strata::error_body(e), nullptr, false);
  if (j.is_discarded() || !j.contains("error")) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  strata::RequestLimits l;
  l.model = "m";
  l.vocab = 1000;
  l.max_tokens = 512;
  try {
    const auto r = strata::parse_completion_request(body, l);
    check_sampling(r, l);
    if (r.prompt_is_ids && r.prompt_ids.empty()) __builtin_trap();
    for (int32_t id : r.prompt_ids)
      if (id < 0 || id >= l.vocab) __builtin_trap();
  } catch (const strata::ApiError& e) {
    check_error(e);
  }
  try {
    const auto r = strata::parse_chat_request(body, l);
    check_sampling(r, l);
    if (r.messages.empty()) __builtin_trap();
  } catch (const strata::ApiError& e) {
    check_error(e);
  }
  return 0;
}
