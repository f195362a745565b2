#include "serve/openai_request.h"

#include <cmath>
#include <limits>

#include <nlohmann/json.hpp>

namespace strata {

using nlohmann::json;

ApiError::ApiError(int status_, std::string message, std::string type_, std::string param_, std::string code_)
    : InputError(std::move(message)), status(status_), type(std::move(type_)), param(std::move(param_)), code(std::move(code_)) {}

std::string error_body(const ApiError& e) {
  json err = {{"message", e.what()},
              {"type", e.type},
              {"param", e.param.empty() ? json(nullptr) : json(e.param)},
              {"code", e.code.empty() ? json(nullptr) : json(e.code)}};
  return json{{"error", err}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

namespace {

[[noreturn]] void bad(const std::string& param, const std::string& msg) { throw ApiError(400, msg, "invalid_request_error", param); }

// What a JSON value is, for messages: "a string", "an array", ...
std::string kind(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::object: return "an object";
    case json::value_t::array: return "an array";
    case json::value_t::string: return "a string";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::number_float: return "a number with a fraction";
    default: return "something else";
  }
}

json parse_body(const std::string& body) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::parse_error& e) {
    const std::string what = e.what();
    if (what.find("UTF-8") != std::string::npos)
      bad("", "the request body is not valid UTF-8 (a string holds an ill-formed byte sequence): " + what);
    bad("", "the request body is not valid JSON: " + what);
  } catch (const json::exception& e) {  // out_of_range 406: a number beyond a double (1e400)
    bad("", std::string("the request body holds a number out of range: ") + e.what());
  }
  if (!j.is_object()) bad("", "the request body must be a JSON object, got " + kind(j));
  return j;
}

// The field, or nullptr when absent or null (OpenAI treats an explicit null as absent).
const json* field(const json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

bool get_bool(const json& j, const char* name, bool dflt) {
  const json* v = field(j, name);
  if (!v) return dflt;
  if (!v->is_boolean()) bad(name, fmt::format("'{}' must be a boolean, got {}", name, kind(*v)));
  return v->get<bool>();
}

// A finite number in [lo, hi] (lo excluded when lo_open).
float get_number(const json& j, const char* name, float dflt, double lo, double hi, bool lo_open) {
  const json* v = field(j, name);
  if (!v) return dflt;
  if (!v->is_number()) bad(name, fmt::format("'{}' must be a number, got {}", name, kind(*v)));
  const double x = v->get<double>();
  if (!std::isfinite(x) || (lo_open ? x <= lo : x < lo) || x > hi)
    bad(name, fmt::format("'{}' must be a number in {}{}, {}], got {}", name, lo_open ? "(" : "[", lo, hi, v->dump()));
  return float(x);
}

// An integer in [lo, hi]; a number with a fraction or beyond int64 is refused by name.
int64_t get_int(const json& j, const char* name, int64_t dflt, int64_t lo, int64_t hi) {
  const json* v = field(j, name);
  if (!v) return dflt;
  if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
    bad(name, fmt::format("'{}' must be an integer in [{}, {}], got {}", name, lo, hi, v->dump()));
  if (!v->is_number_integer()) bad(name, fmt::format("'{}' must be an integer, got {}", name, kind(*v)));
  const int64_t x = v->get<int64_t>();
  if (x < lo || x > hi) bad(name, fmt::format("'{}' must be an integer in [{}, {}], got {}", name, lo, hi, x));
  return x;
}

void refuse_unsupported(const json& j) {
  if (const json* n = field(j, "n"); n && !(n->is_number_integer() && n->get<int64_t>() == 1))
    throw ApiError(400, fmt::format("'n' must be 1: one choice per request is supported, got {}", n->dump()),
                   "invalid_request_error", "n", "unsupported");
  if (const json* b = field(j, "best_of"); b && !(b->is_number_integer() && b->get<int64_t>() == 1))
    throw ApiError(400, "'best_of' must be 1: one choice per request is supported", "invalid_request_error", "best_of", "unsupported");
  if (const json* l = field(j, "logprobs"); l && !(l->is_boolean() && !l->get<bool>()) && !(l->is_number_integer() && l->get<int64_t>() == 0))
    throw ApiError(400, "'logprobs' is not supported by this server", "invalid_request_error", "logprobs", "unsupported");
}

void parse_sampling(const json& j, const RequestLimits& lim, SamplingRequest& r) {
  if (const json* m = field(j, "model")) {
    if (!m->is_string()) bad("model", "'model' must be a string, got " + kind(*m));
    r.model = m->get<std::string>();
    if (r.model != lim.model)
      throw ApiError(404, fmt::format("the model '{}' does not exist: this server serves '{}' (GET /v1/models)", r.model, lim.model),
                     "invalid_request_error", "model", "model_not_found");
  } else {
    r.model = lim.model;
  }
  refuse_unsupported(j);
  // max_completion_tokens is the chat API's newer name; either may be given, not both differently.
  const int64_t a = get_int(j, "max_tokens", -1, 1, lim.max_tokens);
  const int64_t b = get_int(j, "max_completion_tokens", -1, 1, lim.max_tokens);
  if (a > 0 && b > 0 && a != b) bad("max_completion_tokens", "'max_tokens' and 'max_completion_tokens' differ: give one");
  r.max_tokens_given = a > 0 || b > 0;
  r.max_tokens = a > 0 ? a : b > 0 ? b : lim.default_max_tokens;
  r.ignore_eos = get_bool(j, "ignore_eos", false);
  r.temperature = get_number(j, "temperature", 1.0f, 0, 2, false);
  r.top_p = get_number(j, "top_p", 1.0f, 0, 1, true);
  const int64_t k = get_int(j, "top_k", 0, -1, std::numeric_limits<int32_t>::max());
  r.top_k = k < 0 ? 0 : int(k);  // -1: off, as in vLLM
  if (const json* s = field(j, "seed")) {
    if (s->is_number_unsigned()) r.seed = s->get<uint64_t>();
    else if (s->is_number_integer()) r.seed = uint64_t(s->get<int64_t>());
    else bad("seed", "'seed' must be an integer, got " + kind(*s));
  }
  if (const json* s = field(j, "stop")) {
    if (s->is_string()) {
      r.stop.push_back(s->get<std::string>());
    } else if (s->is_array()) {
      if (s->size() > 4) bad("stop", fmt::format("'stop' holds at most 4 strings, got {}", s->size()));
      for (const json& x : *s) {
        if (!x.is_string()) bad("stop", "'stop' must be a string or a list of strings; it holds " + kind(x));
        r.stop.push_back(x.get<std::string>());
      }
    } else {
      bad("stop", "'stop' must be a string or a list of strings, got " + kind(*s));
    }
    for (const std::string& x : r.stop)
      if (x.empty()) bad("stop", "a stop string must not be empty");
  }
  r.stream = get_bool(j, "stream", false);
  if (const json* o = field(j, "stream_options")) {
    if (!o->is_object()) bad("stream_options", "'stream_options' must be an object, got " + kind(*o));
    if (!r.stream) bad("stream_options", "'stream_options' is only allowed when 'stream' is true");
    r.include_usage = get_bool(*o, "include_usage", false);
  }
}

// prompt: a string, a list of ids, or a list holding one of those (OpenAI's batch form, of one).
void parse_prompt(const json& p, const RequestLimits& lim, CompletionRequest& r) {
  auto ids = [&](const json& a) {
    r.prompt_is_ids = true;
    for (const json& x : a) {
      if (!x.is_number_integer() || x.get<int64_t>() < 0 || x.get<int64_t>() >= lim.vocab)
        bad("prompt", fmt::format("a prompt of token ids must hold integers in [0, {}), got {}", lim.vocab,
                                  x.dump(-1, ' ', false, json::error_handler_t::replace)));
      r.prompt_ids.push_back(x.get<int32_t>());
    }
  };
  if (p.is_string()) {
    r.prompt = p.get<std::string>();
  } else if (p.is_array() && !p.empty() && p[0].is_number()) {
    ids(p);
  } else if (p.is_array() && p.size() == 1 && p[0].is_string()) {
    r.prompt = p[0].get<std::string>();
  } else if (p.is_array() && p.size() == 1 && p[0].is_array()) {
    ids(p[0]);
  } else if (p.is_array() && p.size() > 1 && (p[0].is_string() || p[0].is_array())) {
    bad("prompt", fmt::format("a list of {} prompts: one prompt per request is supported", p.size()));
  } else {
    bad("prompt", "'prompt' must be a string or a list of token ids, got " + (p.is_array() && p.empty() ? std::string("an empty list") : kind(p)));
  }
  if (r.prompt_is_ids && r.prompt_ids.empty()) bad("prompt", "the prompt is empty");
}

}  // namespace

CompletionRequest parse_completion_request(const std::string& body, const RequestLimits& limits) {
  const json j = parse_body(body);
  CompletionRequest r;
  parse_sampling(j, limits, r);
  const json* p = field(j, "prompt");
  if (!p) bad("prompt", "'prompt' is required");
  parse_prompt(*p, limits, r);
  r.echo = get_bool(j, "echo", false);
  if (r.echo) throw ApiError(400, "'echo' is not supported by this server", "invalid_request_error", "echo", "unsupported");
  if (const json* s = field(j, "suffix"); s && !(s->is_string() && s->get<std::string>().empty()))
    throw ApiError(400, "'suffix' is not supported by this server", "invalid_request_error", "suffix", "unsupported");
  return r;
}

ChatRequest parse_chat_request(const std::string& body, const RequestLimits& limits) {
  const json j = parse_body(body);
  ChatRequest r;
  parse_sampling(j, limits, r);
  for (const char* f : {"tools", "functions"})
    if (const json* t = field(j, f); t && !(t->is_array() && t->empty()))
      throw ApiError(400, fmt::format("'{}' is not supported by this server", f), "invalid_request_error", f, "unsupported");
  const json* m = field(j, "messages");
  if (!m) bad("messages", "'messages' is required");
  if (!m->is_array() || m->empty()) bad("messages", "'messages' must be a non-empty list of messages, got " + kind(*m));
  for (size_t i = 0; i < m->size(); ++i) {
    const json& x = (*m)[i];
    const std::string where = fmt::format("messages[{}]", i);
    if (!x.is_object()) bad(where, where + " must be an object, got " + kind(x));
    ChatMessageIn msg;
    const json* role = field(x, "role");
    if (!role || !role->is_string()) bad(where + ".role", where + ".role must be a string");
    msg.role = role->get<std::string>();
    if (msg.role != "system" && msg.role != "user" && msg.role != "assistant" && msg.role != "tool" && msg.role != "developer")
      bad(where + ".role", fmt::format("{}.role '{}' is not one of system, developer, user, assistant, tool", where,
                                       msg.role));
    if (const json* c = field(x, "content")) {
      if (c->is_string()) {
        msg.content = c->get<std::string>();
      } else if (c->is_array()) {  // content parts: text only
        for (const json& part : *c) {
          const json* type = part.is_object() ? field(part, "type") : nullptr;
          const json* text = part.is_object() ? field(part, "text") : nullptr;
          if (!type || !type->is_string() || type->get<std::string>() != "text" || !text || !text->is_string())
            bad(where + ".content", where + ".content parts must be {\"type\": \"text\", \"text\": \"...\"}: only text is supported");
          msg.content += text->get<std::string>();
        }
      } else {
        bad(where + ".content", where + ".content must be a string or a list of text parts, got " + kind(*c));
      }
    } else if (msg.role != "assistant") {
      bad(where + ".content", where + ".content is required");
    }
    r.messages.push_back(std::move(msg));
  }
  return r;
}

}  // namespace strata
