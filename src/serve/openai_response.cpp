#include "serve/openai_response.h"

#include <nlohmann/json.hpp>

namespace strata {

using nlohmann::json;

namespace {

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

json head(const ResponseHead& h, bool chunk) {
  return json{{"id", h.id},
              {"object", h.chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion"},
              {"created", h.created},
              {"model", h.model}};
}

json usage(const Usage& u) {
  return json{{"prompt_tokens", u.prompt_tokens},
              {"completion_tokens", u.completion_tokens},
              {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

json finish(const std::string& r) { return r.empty() ? json(nullptr) : json(r); }

}  // namespace

std::string response_body(const ResponseHead& h, const std::string& text, const std::vector<int32_t>& ids,
                          const std::string& finish_reason, const Usage& u) {
  json j = head(h, false);
  json c = {{"index", 0}, {"finish_reason", finish(finish_reason)}, {"logprobs", nullptr}, {"token_ids", ids}};
  if (h.chat) c["message"] = {{"role", "assistant"}, {"content", text}};
  else c["text"] = text;
  j["choices"] = json::array({c});
  j["usage"] = usage(u);
  return dump(j);
}

std::string chunk_event(const ResponseHead& h, const std::string& text, const std::vector<int32_t>& ids,
                        const std::string& finish_reason, bool role_only) {
  json j = head(h, true);
  json c = {{"index", 0}, {"finish_reason", finish(finish_reason)}, {"logprobs", nullptr}, {"token_ids", ids}};
  if (h.chat) c["delta"] = role_only ? json{{"role", "assistant"}, {"content", ""}} : json{{"content", text}};
  else c["text"] = text;
  j["choices"] = json::array({c});
  j["usage"] = nullptr;
  return "data: " + dump(j) + "\n\n";
}

std::string usage_event(const ResponseHead& h, const Usage& u) {
  json j = head(h, true);
  j["choices"] = json::array();
  j["usage"] = usage(u);
  return "data: " + dump(j) + "\n\n";
}

std::string error_event(const std::string& error_body) { return "data: " + error_body + "\n\n"; }

}  // namespace strata
