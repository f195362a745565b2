#pragma once
// What the server's tests share: a tiny bytes model behind a Server on an ephemeral port, requests
// through httplib's client, SSE parsing, and generate()'s tokens to compare with.
#include <algorithm>
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "infer/generate.h"
#include "infer/loaded_model.h"
#include "model_testing.h"
#include "serve/engine_factory.h"
#include "serve/server.h"

namespace strata::testing {

// The tiny hybrid every server test runs (bytes vocabulary, a fixed seed: untrained, deterministic).
inline LoadedModel tiny_loaded_model() {
  LoadedModel lm;
  lm.config.model = tiny_model("M*");
  lm.model = std::make_unique<Model>(lm.config.model, 7);
  return lm;
}

struct ServerFixture {
  LoadedModel lm = tiny_loaded_model();
  std::unique_ptr<Server> server;
  int port = 0;

  explicit ServerFixture(ServeOptions o = {}, EngineSettings es = {}, std::unique_ptr<Engine> engine = nullptr,
                         const std::string& tokenizer_config_json = "") {
    lm.tokenizer_config_json = tokenizer_config_json;
    o.port = 0;
    o.model_name = "tiny";
    o.log_requests = false;
    // The engine `strata serve` runs by default, with a cache the size of the tiny model's needs.
    es.cache_mib = std::min<int64_t>(es.cache_mib, 32);
    if (!engine) engine = make_engine("batch", *lm.model, es);
    server = std::make_unique<Server>(lm, std::move(engine), o);
    port = server->start();
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(120);
    return c;
  }
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port); }
};

// A tokenizer_config.json with a small chat template (ChatML-like), for the chat endpoint's tests.
inline const char* kChatTokenizerConfig =
    R"({"chat_template": "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}",
        "bos_token": "<s>", "eos_token": "</s>"})";

// generate()'s tokens for a prompt (what the server must answer).
inline std::vector<int32_t> expected_tokens(Model& m, const std::vector<int32_t>& prompt, int max_tokens, float temperature = 0,
                                            uint64_t seed = 0) {
  GenerateOptions o;
  o.max_tokens = max_tokens;
  o.sampler.temperature = temperature;
  o.sampler.top_k = 0;
  o.sampler.top_p = 1;
  o.seed = seed;
  return generate(m, prompt, o);
}

// The `data: ` payloads of an SSE body, in order ("[DONE]" included).
inline std::vector<std::string> sse_events(const std::string& body) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < body.size()) {
    size_t end = body.find("\n\n", at);
    if (end == std::string::npos) end = body.size();
    const std::string ev = body.substr(at, end - at);
    if (ev.rfind("data: ", 0) == 0) out.push_back(ev.substr(6));
    at = end + 2;
  }
  return out;
}

// A POST over a raw socket: sends it, reads until `until` appears in what came back (or `max_bytes`),
// then closes the connection without reading the rest (a client that goes away mid-stream).
inline std::string post_and_hang_up(int port, const std::string& path, const std::string& body, const std::string& until) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    ::close(fd);
    return "";
  }
  const std::string req = "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " +
                          std::to_string(body.size()) + "\r\n\r\n" + body;
  (void)!::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
  std::string got;
  char buf[4096];
  while (got.find(until) == std::string::npos && got.size() < (1u << 20)) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    got.append(buf, size_t(n));
  }
  ::close(fd);
  return got;
}

// Waits (polling) until pred() holds, at most `limit`; returns pred().
template <class F>
bool eventually(F pred, std::chrono::seconds limit = std::chrono::seconds(60)) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!pred() && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return pred();
}

// `text` as the server writes it into JSON (ill-formed UTF-8 replaced by U+FFFD).
inline std::string as_json_text(const std::string& text) {
  return nlohmann::json::parse(nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)).get<std::string>();
}

}  // namespace strata::testing
