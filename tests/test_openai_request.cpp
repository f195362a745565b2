// OpenAI request parsing (serve/openai_request.h): the fields of both endpoints, and every refusal
// with its HTTP status, parameter and message. Also the text stream (serve/text_stream.h):
// incremental detokenization and stop strings, with no model. And the fuzz target's seed corpus.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "serve/openai_request.h"
#include "serve/text_stream.h"

using namespace strata;

namespace {

RequestLimits lim() {
  RequestLimits l;
  l.model = "tiny";
  l.vocab = 256;
  l.max_tokens = 100;
  return l;
}

// The ApiError a completion body gets; fails when it parses.
ApiError completion_error(const std::string& body) {
  try {
    parse_completion_request(body, lim());
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "accepted: " << body;
  return ApiError(0, "");
}

ApiError chat_error(const std::string& body) {
  try {
    parse_chat_request(body, lim());
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "accepted: " << body;
  return ApiError(0, "");
}

void expect_error(const ApiError& e, int status, const std::string& param, const std::string& says) {
  EXPECT_EQ(e.status, status) << e.what();
  EXPECT_EQ(e.param, param) << e.what();
  EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << "message '" << e.what() << "' lacks '" << says << "'";
}

}  // namespace

TEST(OpenAIRequest, CompletionFields) {
  auto r = parse_completion_request(
      R"({"model": "tiny", "prompt": "hi", "max_tokens": 7, "temperature": 0, "top_p": 0.5, "top_k": 3, "seed": 42,
          "stop": ["a", "bc"], "stream": true, "stream_options": {"include_usage": true}, "unknown_field": {"x": 1},
          "n": 1, "logprobs": null, "ignore_eos": true})",
      lim());
  EXPECT_EQ(r.model, "tiny");
  EXPECT_EQ(r.prompt, "hi");
  EXPECT_FALSE(r.prompt_is_ids);
  EXPECT_EQ(r.max_tokens, 7);
  EXPECT_TRUE(r.max_tokens_given);
  EXPECT_EQ(r.temperature, 0.0f);
  EXPECT_EQ(r.top_p, 0.5f);
  EXPECT_EQ(r.top_k, 3);
  ASSERT_TRUE(r.seed.has_value());
  EXPECT_EQ(*r.seed, 42u);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"a", "bc"}));
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_TRUE(r.ignore_eos);
}

TEST(OpenAIRequest, CompletionDefaultsAndForms) {
  auto r = parse_completion_request(R"({"prompt": "x"})", lim());
  EXPECT_EQ(r.model, "tiny");  // no model: the served one
  EXPECT_EQ(r.max_tokens, 16);
  EXPECT_FALSE(r.max_tokens_given);
  EXPECT_EQ(r.temperature, 1.0f);
  EXPECT_EQ(r.top_p, 1.0f);
  EXPECT_FALSE(r.seed.has_value());
  EXPECT_FALSE(r.stream);
  // null fields are absent fields
  r = parse_completion_request(R"({"prompt": "x", "max_tokens": null, "stop": null, "seed": null, "stream": null})", lim());
  EXPECT_EQ(r.max_tokens, 16);
  // prompt forms: ids, [ids], [string]; stop as one string; max_completion_tokens; top_k -1 = off
  r = parse_completion_request(R"({"prompt": [1, 2, 255], "stop": "\n", "max_completion_tokens": 5, "top_k": -1})", lim());
  EXPECT_TRUE(r.prompt_is_ids);
  EXPECT_EQ(r.prompt_ids, (std::vector<int32_t>{1, 2, 255}));
  EXPECT_EQ(r.stop, std::vector<std::string>{"\n"});
  EXPECT_EQ(r.max_tokens, 5);
  EXPECT_EQ(r.top_k, 0);
  r = parse_completion_request(R"({"prompt": [[4, 5]]})", lim());
  EXPECT_EQ(r.prompt_ids, (std::vector<int32_t>{4, 5}));
  r = parse_completion_request(R"({"prompt": ["one"], "seed": -1})", lim());
  EXPECT_EQ(r.prompt, "one");
  EXPECT_EQ(*r.seed, ~uint64_t(0));  // a negative seed is a valid seed
  r = parse_completion_request(R"({"prompt": "x", "seed": 18446744073709551615, "max_tokens": 100})", lim());
  EXPECT_EQ(*r.seed, ~uint64_t(0));
  EXPECT_EQ(r.max_tokens, 100);  // the limit itself is allowed
  r = parse_completion_request("{\"prompt\": \"caf\xc3\xa9 \\u00e9\"}", lim());
  EXPECT_EQ(r.prompt, "caf\xc3\xa9 \xc3\xa9");
}

TEST(OpenAIRequest, BadJsonAndUtf8) {
  expect_error(completion_error(""), 400, "", "not valid JSON");
  expect_error(completion_error("{\"prompt\": "), 400, "", "not valid JSON");
  expect_error(completion_error("{\"prompt\": \"x\",}"), 400, "", "not valid JSON");
  expect_error(completion_error("[1, 2]"), 400, "", "must be a JSON object, got an array");
  expect_error(completion_error("\"x\""), 400, "", "must be a JSON object");
  expect_error(completion_error("{\"prompt\": \"\xff\xfe\"}"), 400, "", "not valid UTF-8");
  expect_error(completion_error("{\"prompt\": \"\xc3\"}"), 400, "", "not valid UTF-8");
  expect_error(completion_error("{\"prompt\": \"\\ud800\"}"), 400, "", "not valid JSON");  // a lone surrogate escape
}

TEST(OpenAIRequest, WrongTypes) {
  expect_error(completion_error(R"({})"), 400, "prompt", "'prompt' is required");
  expect_error(completion_error(R"({"prompt": 5})"), 400, "prompt", "must be a string or a list of token ids, got an integer");
  expect_error(completion_error(R"({"prompt": []})"), 400, "prompt", "an empty list");
  expect_error(completion_error(R"({"prompt": [[]]})"), 400, "prompt", "the prompt is empty");
  expect_error(completion_error(R"({"prompt": {"a": 1}})"), 400, "prompt", "got an object");
  expect_error(completion_error(R"({"prompt": [1, "a"]})"), 400, "prompt", "integers in [0, 256)");
  expect_error(completion_error(R"({"prompt": [1, 1.5]})"), 400, "prompt", "integers in [0, 256)");
  expect_error(completion_error(R"({"prompt": ["a", "b"]})"), 400, "prompt", "one prompt per request");
  expect_error(completion_error(R"({"prompt": "x", "model": 3})"), 400, "model", "'model' must be a string");
  expect_error(completion_error(R"({"prompt": "x", "max_tokens": "5"})"), 400, "max_tokens", "must be an integer, got a string");
  expect_error(completion_error(R"({"prompt": "x", "max_tokens": 5.5})"), 400, "max_tokens", "must be an integer");
  expect_error(completion_error(R"({"prompt": "x", "temperature": "hot"})"), 400, "temperature", "must be a number, got a string");
  expect_error(completion_error(R"({"prompt": "x", "top_p": true})"), 400, "top_p", "must be a number, got a boolean");
  expect_error(completion_error(R"({"prompt": "x", "top_k": 2.5})"), 400, "top_k", "must be an integer");
  expect_error(completion_error(R"({"prompt": "x", "seed": "1"})"), 400, "seed", "'seed' must be an integer");
  expect_error(completion_error(R"({"prompt": "x", "stop": 1})"), 400, "stop", "a string or a list of strings");
  expect_error(completion_error(R"({"prompt": "x", "stop": ["a", 1]})"), 400, "stop", "holds an integer");
  expect_error(completion_error(R"({"prompt": "x", "stream": "yes"})"), 400, "stream", "must be a boolean");
  expect_error(completion_error(R"({"prompt": "x", "stream": true, "stream_options": []})"), 400, "stream_options", "must be an object");
  expect_error(completion_error(R"({"prompt": "x", "stream": true, "stream_options": {"include_usage": 1}})"), 400, "include_usage",
               "must be a boolean");
}

TEST(OpenAIRequest, OutOfRange) {
  expect_error(completion_error(R"({"prompt": "x", "max_tokens": 0})"), 400, "max_tokens", "in [1, 100], got 0");
  expect_error(completion_error(R"({"prompt": "x", "max_tokens": 101})"), 400, "max_tokens", "in [1, 100], got 101");
  expect_error(completion_error(R"({"prompt": "x", "max_tokens": 99999999999999999999})"), 400, "max_tokens", "must be an integer");
  expect_error(completion_error(R"({"prompt": "x", "max_tokens": 18446744073709551615})"), 400, "max_tokens", "in [1, 100]");
  expect_error(completion_error(R"({"prompt": "x", "max_completion_tokens": -3})"), 400, "max_completion_tokens", "in [1, 100]");
  expect_error(completion_error(R"({"prompt": "x", "max_tokens": 3, "max_completion_tokens": 4})"), 400, "max_completion_tokens", "differ");
  expect_error(completion_error(R"({"prompt": "x", "temperature": -0.1})"), 400, "temperature", "in [0, 2]");
  expect_error(completion_error(R"({"prompt": "x", "temperature": 2.5})"), 400, "temperature", "in [0, 2]");
  expect_error(completion_error(R"({"prompt": "x", "temperature": 1e400})"), 400, "", "number out of range");
  expect_error(completion_error(R"({"prompt": "x", "temperature": 1e300})"), 400, "temperature", "in [0, 2]");
  expect_error(completion_error(R"({"prompt": "x", "top_p": 0})"), 400, "top_p", "in (0, 1]");
  expect_error(completion_error(R"({"prompt": "x", "top_p": 1.01})"), 400, "top_p", "in (0, 1]");
  expect_error(completion_error(R"({"prompt": "x", "top_k": -2})"), 400, "top_k", "in [-1,");
  expect_error(completion_error(R"({"prompt": [256]})"), 400, "prompt", "[0, 256), got 256");
  expect_error(completion_error(R"({"prompt": [-1]})"), 400, "prompt", "[0, 256), got -1");
  expect_error(completion_error(R"({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]})"), 400, "stop", "at most 4");
  expect_error(completion_error(R"({"prompt": "x", "stop": ""})"), 400, "stop", "must not be empty");
}

TEST(OpenAIRequest, UnsupportedAndUnknownModel) {
  const ApiError n2 = completion_error(R"({"prompt": "x", "n": 2})");
  expect_error(n2, 400, "n", "'n' must be 1");
  EXPECT_EQ(n2.code, "unsupported");
  expect_error(completion_error(R"({"prompt": "x", "n": "1"})"), 400, "n", "'n' must be 1");
  expect_error(completion_error(R"({"prompt": "x", "best_of": 3})"), 400, "best_of", "must be 1");
  expect_error(completion_error(R"({"prompt": "x", "logprobs": 2})"), 400, "logprobs", "not supported");
  expect_error(completion_error(R"({"prompt": "x", "echo": true})"), 400, "echo", "not supported");
  expect_error(completion_error(R"({"prompt": "x", "suffix": "y"})"), 400, "suffix", "not supported");
  expect_error(completion_error(R"({"prompt": "x", "stream_options": {"include_usage": true}})"), 400, "stream_options",
               "only allowed when 'stream' is true");
  const ApiError m = completion_error(R"({"prompt": "x", "model": "gpt-4"})");
  expect_error(m, 404, "model", "'gpt-4' does not exist");
  EXPECT_EQ(m.code, "model_not_found");
  EXPECT_NE(std::string(m.what()).find("serves 'tiny'"), std::string::npos);
}

TEST(OpenAIRequest, ChatFieldsAndErrors) {
  auto r = parse_chat_request(
      R"({"model": "tiny", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
          {"role": "assistant", "content": null}], "max_completion_tokens": 9, "tools": []})",
      lim());
  ASSERT_EQ(r.messages.size(), 3u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[1].content, "ab");
  EXPECT_EQ(r.messages[2].content, "");
  EXPECT_EQ(r.max_tokens, 9);
  expect_error(chat_error(R"({})"), 400, "messages", "'messages' is required");
  expect_error(chat_error(R"({"messages": []})"), 400, "messages", "non-empty list");
  expect_error(chat_error(R"({"messages": "hi"})"), 400, "messages", "got a string");
  expect_error(chat_error(R"({"messages": [1]})"), 400, "messages[0]", "must be an object");
  expect_error(chat_error(R"({"messages": [{"content": "x"}]})"), 400, "messages[0].role", "must be a string");
  expect_error(chat_error(R"({"messages": [{"role": "king", "content": "x"}]})"), 400, "messages[0].role", "'king' is not one of");
  expect_error(chat_error(R"({"messages": [{"role": "user"}]})"), 400, "messages[0].content", "is required");
  expect_error(chat_error(R"({"messages": [{"role": "user", "content": 5}]})"), 400, "messages[0].content", "got an integer");
  expect_error(chat_error(R"({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]})"), 400,
               "messages[0].content", "only text");
  expect_error(chat_error(R"({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]})"), 400, "tools",
               "not supported");
  expect_error(chat_error(R"({"messages": [{"role": "user", "content": "x"}], "model": "other"})"), 404, "model", "does not exist");
  expect_error(chat_error(R"({"messages": [{"role": "user", "content": "x"}], "temperature": 3})"), 400, "temperature", "in [0, 2]");
}

TEST(OpenAIRequest, ErrorBodyShape) {
  const auto j = nlohmann::json::parse(error_body(ApiError(400, "bad \xff thing", "invalid_request_error", "top_p")));
  ASSERT_TRUE(j.contains("error"));
  EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  EXPECT_EQ(j["error"]["param"], "top_p");
  EXPECT_TRUE(j["error"]["code"].is_null());
  EXPECT_EQ(j["error"]["message"], "bad \xef\xbf\xbd thing");  // ill-formed bytes are replaced, the body stays JSON
}

// The text stream over byte ids (id = byte): what comes out, token by token.
namespace {
std::string bytes_of(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t i : ids) s.push_back(char(i));
  return s;
}
std::vector<std::string> feed(TextStream& ts, const std::string& text) {
  std::vector<std::string> out;
  for (unsigned char c : text) out.push_back(ts.push(int32_t(c)));
  return out;
}
}  // namespace

TEST(TextStream, HoldsBackHalfCharacters) {
  TextStream ts(bytes_of, {});
  auto out = feed(ts, "a\xc3\xa9" "b\xe2\x82\xac");  // a é b €
  EXPECT_EQ(out, (std::vector<std::string>{"a", "", "\xc3\xa9", "b", "", "", "\xe2\x82\xac"}));
  EXPECT_EQ(ts.finish(), "");
  TextStream cut(bytes_of, {});
  feed(cut, "x\xe2\x82");  // generation ends inside a character: the bytes go out at the end
  EXPECT_EQ(cut.finish(), "\xe2\x82");
  EXPECT_EQ(utf8_complete_prefix("ab\xf0\x9f\x98"), 2u);
  EXPECT_EQ(utf8_complete_prefix("ab\xf0\x9f\x98\x80"), 6u);
  EXPECT_EQ(utf8_complete_prefix("\x80\x80\x80\x80"), 4u);  // stray continuation bytes: nothing to wait for
}

TEST(TextStream, StopStrings) {
  TextStream ts(bytes_of, {"END", "xy"});
  auto out = feed(ts, "abEN");
  EXPECT_EQ(out, (std::vector<std::string>{"a", "b", "", ""}));  // "E", "EN" may start "END"
  EXPECT_EQ(ts.push('Z'), "ENZ");                                // they did not
  EXPECT_EQ(ts.push('x'), "");
  EXPECT_EQ(ts.push('y'), "");  // "xy": cut before it
  EXPECT_TRUE(ts.stopped());
  EXPECT_EQ(ts.push('q'), "");
  EXPECT_EQ(ts.finish(), "");

  TextStream t2(bytes_of, {"END"});
  feed(t2, "ok E");
  EXPECT_EQ(t2.finish(), "E");  // held back, then released at the end
  TextStream t3(bytes_of, {"é"});
  auto o3 = feed(t3, "a\xc3\xa9z");
  EXPECT_TRUE(t3.stopped());
  EXPECT_EQ(o3[0], "a");
}

// The fuzz target's seed corpus (fuzz/corpus/openai_request) doubles as regression cases: valid_*
// parse (valid_chat* as a chat request, the others as a completion), invalid_* are refused by both.
TEST(OpenAIRequest, FuzzSeedCorpus) {
  namespace fs = std::filesystem;
  const char* src = std::getenv("STRATA_SOURCE_DIR");
  const fs::path dir = fs::path(src && *src ? src : ".") / "fuzz" / "corpus" / "openai_request";
  if (!fs::is_directory(dir)) GTEST_SKIP() << dir << " not found (run from the source root or set STRATA_SOURCE_DIR)";
  RequestLimits l;  // as fuzz/fuzz_openai_request.cpp sets them
  l.model = "m";
  l.vocab = 1000;
  l.max_tokens = 512;
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::ifstream f(e.path(), std::ios::binary);
    const std::string body{std::istreambuf_iterator<char>(f), {}}, name = e.path().filename().string();
    ++n;
    if (name.rfind("valid_chat", 0) == 0) {
      EXPECT_NO_THROW(parse_chat_request(body, l)) << name;
    } else if (name.rfind("valid_", 0) == 0) {
      EXPECT_NO_THROW(parse_completion_request(body, l)) << name;
    } else {
      EXPECT_THROW(parse_completion_request(body, l), ApiError) << name;
      EXPECT_THROW(parse_chat_request(body, l), ApiError) << name;
    }
  }
  EXPECT_GE(n, 10);
}
