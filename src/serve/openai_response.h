#pragma once
// OpenAI response bodies: the whole answer (text_completion / chat.completion) and the chunks of a
// stream (SSE `data: {...}` events), with usage. Text that is not valid UTF-8 (a model may generate
// any bytes) is written with U+FFFD in place of the ill-formed bytes.
#include <cstdint>
#include <string>
#include <vector>

namespace strata {

struct ResponseHead {
  std::string id;      // "cmpl-..." / "chatcmpl-..."
  int64_t created = 0;  // unix seconds
  std::string model;
  bool chat = false;
};

struct Usage {
  int64_t prompt_tokens = 0, completion_tokens = 0;
};

// The non-streamed body. token_ids is an extension field of the choice (the generated ids).
std::string response_body(const ResponseHead& h, const std::string& text, const std::vector<int32_t>& token_ids,
                           const std::string& finish_reason, const Usage& u);
// One SSE event carrying a stream chunk: `data: {...}\n\n`. finish_reason "" -> null. For chat,
// role_only gives the first chunk (delta {"role": "assistant", "content": ""}).
std::string chunk_event(const ResponseHead& h, const std::string& text, const std::vector<int32_t>& token_ids,
                        const std::string& finish_reason, bool role_only = false);
// The last chunk when stream_options.include_usage: no choices, the usage.
std::string usage_event(const ResponseHead& h, const Usage& u);
// An error in the middle of a stream: `data: {"error": {...}}\n\n`.
std::string error_event(const std::string& error_body);
inline const char* done_event() { return "data: [DONE]\n\n"; }

}  // namespace strata
