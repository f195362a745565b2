#pragma once
// OpenAI request bodies (/v1/completions, /v1/chat/completions) -> typed requests, with no HTTP in
// sight, so that the parsing is tested and fuzzed on its own (tests/test_openai_request.cpp,
// fuzz/fuzz_openai_request.cpp). Every refusal is an ApiError carrying the HTTP status and the body
// fields OpenAI's API gives ({"error": {"message", "type", "param", "code"}}). Unknown fields are
// ignored, as OpenAI ignores them.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"

namespace strata {

// A request the server refuses. An InputError, so that code that only wants the message can catch that.
struct ApiError : InputError {
  ApiError(int status, std::string message, std::string type = "invalid_request_error", std::string param = "",
           std::string code = "");
  int status;
  std::string type, param, code;  // "" -> null in the body
};

// The limits a request is checked against (the server's options and its model).
struct RequestLimits {
  std::string model;             // the served model's name; a request naming another is refused (404)
  int64_t vocab = 0;             // prompt ids must be in [0, vocab)
  int64_t max_tokens = 4096;     // the most a request may ask to generate
  int64_t default_max_tokens = 16;  // when the request gives none (OpenAI's completions default)
};

// The fields both endpoints share.
struct SamplingRequest {
  std::string model;
  int64_t max_tokens = 16;
  float temperature = 1.0f;  // OpenAI's default; 0 = greedy
  float top_p = 1.0f;
  int top_k = 0;             // extension (vLLM's): 0 = off
  std::optional<uint64_t> seed;  // none: the server picks one
  std::vector<std::string> stop;  // at most 4, none empty
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool ignore_eos = false;     // extension (vLLM's): generate past the model's end-of-sequence ids
  bool max_tokens_given = false;  // max_tokens or max_completion_tokens was in the request
};

struct CompletionRequest : SamplingRequest {
  std::string prompt;               // text, or
  std::vector<int32_t> prompt_ids;  // token ids (prompt given as a list of integers)
  bool prompt_is_ids = false;
  bool echo = false;  // refused when true (not supported); kept for the message
};

struct ChatMessageIn {
  std::string role;
  std::string content;
};

struct ChatRequest : SamplingRequest {
  std::vector<ChatMessageIn> messages;
};

// Throw ApiError (400 bad JSON / wrong types / out of range / unsupported; 404 unknown model).
CompletionRequest parse_completion_request(const std::string& body, const RequestLimits& limits);
ChatRequest parse_chat_request(const std::string& body, const RequestLimits& limits);

// {"error": {"message", "type", "param", "code"}}.
std::string error_body(const ApiError& e);

}  // namespace strata
