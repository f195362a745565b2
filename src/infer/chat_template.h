#pragma once
// A model's chat template: the Jinja template of its Hugging Face tokenizer_config.json
// ("chat_template"), rendered as transformers' apply_chat_template renders it, for the messages of
// an OpenAI chat request. Implemented by a small Jinja interpreter (infer/jinja/) that covers what
// the templates of the supported architectures use; a template using anything else is refused at
// load with the construct named, never rendered differently.
#include <memory>
#include <string>
#include <vector>

namespace strata {

struct ChatMessage {
  std::string role;     // "system", "user", "assistant", "tool"
  std::string content;
};

class ChatTemplate {
 public:
  // From tokenizer_config.json's text: its chat_template (a string, or a list of named templates, of
  // which "default" is taken) and the special tokens it refers to (bos_token, eos_token, ...).
  // InputError naming `where` when there is no template or it cannot be parsed.
  static ChatTemplate from_tokenizer_config(const std::string& tokenizer_config_json, const std::string& where);
  // The prompt text for `messages`; with add_generation_prompt, ending where the assistant's reply starts.
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;

  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;
  ~ChatTemplate();

 private:
  ChatTemplate();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace strata
