// TEMPORARY (delete at the merge with the branch that adds infer/chat_template.cpp): lets the
// server branch link against the ChatTemplate contract before its implementation lands. Every model
// reads as having no chat template, so /v1/chat/completions answers 400 saying so.
#include "core/error.h"
#include "infer/chat_template.h"

namespace strata {

struct ChatTemplate::Impl {};

ChatTemplate::ChatTemplate() = default;
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;
ChatTemplate::~ChatTemplate() = default;

ChatTemplate ChatTemplate::from_tokenizer_config(const std::string&, const std::string& where) {
  (void)where;
  throw InputError("chat templates are not built yet");
}

std::string ChatTemplate::render(const std::vector<ChatMessage>&, bool) const {
  throw InputError("chat templates are not built yet");
}

}  // namespace strata
