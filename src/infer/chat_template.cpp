#include "infer/chat_template.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "infer/jinja/parser.h"
#include "infer/jinja/render.h"

namespace strata {

namespace {

// The special tokens transformers passes to every template (PreTrainedTokenizerBase's
// SPECIAL_TOKENS_ATTRIBUTES, as special_tokens_map): only those the config sets.
constexpr const char* kSpecialTokens[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                          "pad_token", "cls_token", "mask_token"};

}  // namespace

struct ChatTemplate::Impl {
  std::string where;
  jinja::Body body;
  jinja::Dict special_tokens;
};

ChatTemplate::ChatTemplate() : impl_(std::make_unique<Impl>()) {}
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;
ChatTemplate::~ChatTemplate() = default;

ChatTemplate ChatTemplate::from_tokenizer_config(const std::string& tokenizer_config_json, const std::string& where) {
  nlohmann::json j = nlohmann::json::parse(tokenizer_config_json, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    throw InputError(fmt::format("'{}': tokenizer_config.json is not a JSON object", where));
  ChatTemplate t;
  t.impl_->where = where;
  std::string source;
  const auto it = j.find("chat_template");
  if (it == j.end() || it->is_null())
    throw InputError(fmt::format("'{}': tokenizer_config.json has no chat_template (the model was not trained for chat)", where));
  if (it->is_string()) {
    source = it->get<std::string>();
  } else if (it->is_array()) {
    std::vector<std::string> names;
    bool found = false;
    for (const auto& e : *it) {
      if (!e.is_object() || !e.contains("name") || !e["name"].is_string() || !e.contains("template") || !e["template"].is_string())
        throw InputError(fmt::format("'{}': chat_template list entries must be {{\"name\": ..., \"template\": ...}}", where));
      names.push_back(e["name"].get<std::string>());
      if (names.back() == "default") {
        source = e["template"].get<std::string>();
        found = true;
      }
    }
    if (!found)
      throw InputError(fmt::format("'{}': chat_template lists no template named 'default' (it has: {})", where,
                                   fmt::join(names, ", ")));
  } else {
    throw InputError(fmt::format("'{}': chat_template must be a string or a list of named templates", where));
  }
  for (const char* name : kSpecialTokens) {
    auto tok = j.find(name);
    if (tok == j.end()) continue;
    if (tok->is_string()) {
      t.impl_->special_tokens.emplace_back(name, jinja::Value::string(tok->get<std::string>()));
    } else if (tok->is_object() && tok->contains("content") && (*tok)["content"].is_string()) {  // AddedToken
      t.impl_->special_tokens.emplace_back(name, jinja::Value::string((*tok)["content"].get<std::string>()));
    } else if (!tok->is_null()) {
      throw InputError(fmt::format("'{}': {} must be a string or an AddedToken {{\"content\": ...}}", where, name));
    }
  }
  try {
    t.impl_->body = jinja::parse(source);
  } catch (const jinja::SyntaxError& e) {
    throw InputError(fmt::format("'{}': chat_template line {}: {}", where, e.line, e.message));
  }
  return t;
}

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  using jinja::Value;
  jinja::List msgs;
  for (const ChatMessage& m : messages)
    msgs.push_back(Value::dict_of({{"role", Value::string(m.role)}, {"content", Value::string(m.content)}}));
  // What transformers' apply_chat_template passes: the special tokens, then messages, tools,
  // documents and add_generation_prompt.
  jinja::Dict vars = impl_->special_tokens;
  vars.emplace_back("messages", Value::list_of(std::move(msgs)));
  vars.emplace_back("tools", Value::none());
  vars.emplace_back("documents", Value::none());
  vars.emplace_back("add_generation_prompt", Value::boolean(add_generation_prompt));
  try {
    return jinja::render(impl_->body, vars);
  } catch (const jinja::RenderError& e) {
    if (e.raised)
      throw InputError(fmt::format("'{}': the chat template refuses this conversation: {}", impl_->where, e.message));
    throw InputError(fmt::format("'{}': chat_template line {}: {}", impl_->where, e.line, e.message));
  }
}

}  // namespace strata
