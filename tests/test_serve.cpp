// strata serve (serve/server.h) in-process on an ephemeral port, hit with httplib's client: the
// completions a client gets equal generate()'s tokens (non-streaming and streamed), stop strings cut
// the text, /v1/models, /health and /metrics answer, and the refusals (400, 404, 408, 429) carry
// OpenAI's error body. A client that hangs up mid-stream cancels its request. And the CLI: `strata
// serve` on a trained checkpoint answers what `strata generate` prints, and stops on SIGTERM.
#include "serve_testing.h"

#include <signal.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>

#include "cli.h"
#include "input_error_testing.h"
#include "infer/chat_template.h"

#include <atomic>
#include <regex>
#include <sstream>

using namespace strata;
using namespace strata::testing;
using nlohmann::json;

namespace {

json post(httplib::Client& c, const std::string& path, const json& body, int want_status) {
  auto r = c.Post(path.c_str(), body.dump(), "application/json");
  EXPECT_TRUE(r) << "no response: " << httplib::to_string(r.error());
  if (!r) return json();
  EXPECT_EQ(r->status, want_status) << r->body;
  return json::parse(r->body);
}

std::vector<int32_t> ids_of(const json& a) { return a.get<std::vector<int32_t>>(); }

void expect_error_body(const json& j, const std::string& says) {
  ASSERT_TRUE(j.contains("error")) << j.dump();
  const json& e = j["error"];
  for (const char* k : {"message", "type", "param", "code"}) EXPECT_TRUE(e.contains(k)) << k << " missing in " << j.dump();
  EXPECT_NE(e["message"].get<std::string>().find(says), std::string::npos) << e["message"];
}

}  // namespace

TEST(Serve, CompletionsEqualGenerate) {
  ServerFixture f;
  auto c = f.client();
  const std::vector<int32_t> prompt = encode_bytes("Hello, server");
  const auto want = expected_tokens(*f.lm.model, prompt, 12);
  json r = post(c, "/v1/completions", {{"model", "tiny"}, {"prompt", "Hello, server"}, {"max_tokens", 12}, {"temperature", 0}}, 200);
  EXPECT_EQ(r["object"], "text_completion");
  EXPECT_EQ(r["model"], "tiny");
  EXPECT_EQ(r["id"].get<std::string>().rfind("cmpl-", 0), 0u);
  const json& ch = r["choices"][0];
  EXPECT_EQ(ids_of(ch["token_ids"]), want);
  EXPECT_EQ(ch["text"], as_json_text(decode_bytes(want)));
  EXPECT_EQ(ch["finish_reason"], "length");
  EXPECT_EQ(r["usage"]["prompt_tokens"], prompt.size());
  EXPECT_EQ(r["usage"]["completion_tokens"], 12);
  EXPECT_EQ(r["usage"]["total_tokens"], prompt.size() + 12);

  // A prompt of ids, sampled with a seed: generate()'s tokens for the same seed, every time.
  const std::vector<int32_t> ids = {5, 77, 200, 13};
  const auto sampled = expected_tokens(*f.lm.model, ids, 9, 0.9f, 1234);
  for (int rep = 0; rep < 2; ++rep) {
    r = post(c, "/v1/completions", {{"prompt", ids}, {"max_tokens", 9}, {"temperature", 0.9}, {"seed", 1234}}, 200);
    EXPECT_EQ(ids_of(r["choices"][0]["token_ids"]), sampled);
  }
}

TEST(Serve, StreamingEqualsGenerateWithUsage) {
  ServerFixture f;
  auto c = f.client();
  const std::vector<int32_t> prompt = encode_bytes("stream me");
  const auto want = expected_tokens(*f.lm.model, prompt, 15);
  json body = {{"prompt", "stream me"}, {"max_tokens", 15}, {"temperature", 0}, {"stream", true},
               {"stream_options", {{"include_usage", true}}}};
  auto r = c.Post("/v1/completions", body.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_NE(r->get_header_value("Content-Type").find("text/event-stream"), std::string::npos);
  const auto events = sse_events(r->body);
  ASSERT_GE(events.size(), 3u) << r->body;
  EXPECT_EQ(events.back(), "[DONE]");
  std::vector<int32_t> got;
  std::string text, finish;
  for (size_t i = 0; i + 2 < events.size(); ++i) {
    json ch = json::parse(events[i]);
    EXPECT_EQ(ch["object"], "text_completion");
    EXPECT_TRUE(ch["usage"].is_null());
    for (int32_t t : ids_of(ch["choices"][0]["token_ids"])) got.push_back(t);
    text += ch["choices"][0]["text"].get<std::string>();
    if (!ch["choices"][0]["finish_reason"].is_null()) finish = ch["choices"][0]["finish_reason"];
  }
  EXPECT_EQ(got, want);
  EXPECT_EQ(finish, "length");
  json usage = json::parse(events[events.size() - 2]);
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"], 15);
  EXPECT_EQ(usage["usage"]["prompt_tokens"], prompt.size());
  // The text is the whole completion's (each chunk's text is valid on its own, so joined it may
  // differ from replacing the whole at once only where a character was split: not for whole chunks).
  EXPECT_EQ(as_json_text(text), text);

  // Without include_usage: no usage chunk.
  body.erase("stream_options");
  r = c.Post("/v1/completions", body.dump(), "application/json");
  ASSERT_TRUE(r);
  const auto ev2 = sse_events(r->body);
  ASSERT_GE(ev2.size(), 2u);
  EXPECT_FALSE(json::parse(ev2[ev2.size() - 2])["choices"].empty());
}

TEST(Serve, StopStringsCutTheText) {
  ServerFixture f;
  auto c = f.client();
  const std::vector<int32_t> prompt = {1, 2, 3, 4};
  const auto want = expected_tokens(*f.lm.model, prompt, 40);
  // A stop string from the completion itself: two printable ASCII bytes at position >= 2.
  size_t at = std::string::npos;
  for (size_t i = 2; i + 1 < want.size() && at == std::string::npos; ++i)
    if (want[i] >= 32 && want[i] < 127 && want[i + 1] >= 32 && want[i + 1] < 127) at = i;
  if (at == std::string::npos) GTEST_SKIP() << "this model's completion has no two printable ASCII bytes in a row to stop at";
  const std::string all = decode_bytes(want), stop = all.substr(at, 2);
  const size_t first = all.find(stop);
  for (bool stream : {false, true}) {
    json body = {{"prompt", prompt}, {"max_tokens", 40}, {"temperature", 0}, {"stop", {stop, "never-seen-xyz"}}, {"stream", stream}};
    auto r = c.Post("/v1/completions", body.dump(), "application/json");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    std::string text, finish;
    std::vector<int32_t> ids;
    if (stream) {
      for (auto& ev : sse_events(r->body)) {
        if (ev == "[DONE]") continue;
        json ch = json::parse(ev);
        text += ch["choices"][0]["text"].get<std::string>();
        for (int32_t t : ids_of(ch["choices"][0]["token_ids"])) ids.push_back(t);
        if (!ch["choices"][0]["finish_reason"].is_null()) finish = ch["choices"][0]["finish_reason"];
      }
    } else {
      json j = json::parse(r->body);
      text = j["choices"][0]["text"];
      ids = ids_of(j["choices"][0]["token_ids"]);
      finish = j["choices"][0]["finish_reason"];
    }
    EXPECT_EQ(text, as_json_text(all.substr(0, first))) << "stream " << stream;
    EXPECT_EQ(finish, "stop");
    EXPECT_EQ(ids, std::vector<int32_t>(want.begin(), want.begin() + long(first + 2)));  // through the stop string's last token
  }
}

TEST(Serve, ModelsHealthMetrics) {
  ServerFixture f;
  auto c = f.client();
  auto h = c.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  EXPECT_EQ(json::parse(h->body)["status"], "ok");
  auto m = c.Get("/v1/models");
  ASSERT_TRUE(m);
  json models = json::parse(m->body);
  EXPECT_EQ(models["object"], "list");
  ASSERT_EQ(models["data"].size(), 1u);
  EXPECT_EQ(models["data"][0]["id"], "tiny");
  EXPECT_EQ(models["data"][0]["object"], "model");
  post(c, "/v1/completions", {{"prompt", "a"}, {"max_tokens", 3}, {"temperature", 0}}, 200);
  post(c, "/v1/completions", {{"prompt", "a"}, {"max_tokens", 0}}, 400);
  auto met = c.Get("/metrics");
  ASSERT_TRUE(met);
  EXPECT_EQ(met->status, 200);
  EXPECT_NE(met->get_header_value("Content-Type").find("text/plain"), std::string::npos);
  // Every line is a comment or `name{labels} value` (Prometheus text format 0.0.4).
  static const std::regex sample(R"(^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"]*")*\})? [-+0-9.eEinfInfNa]+$)");
  std::istringstream in(met->body);
  std::string line;
  std::map<std::string, double> v;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    EXPECT_TRUE(std::regex_match(line, sample)) << line;
    v[line.substr(0, line.rfind(' '))] = std::stod(line.substr(line.rfind(' ') + 1));
  }
  for (const char* k : {"strata_queue_depth", "strata_running_requests", "strata_kv_pages_used", "strata_state_slots_used"})
    EXPECT_TRUE(v.count(k)) << k;
  EXPECT_EQ(v["strata_requests_total{finish_reason=\"length\"}"], 1);
  EXPECT_EQ(v["strata_time_to_first_token_seconds_count"], 1);
  EXPECT_EQ(v["strata_inter_token_latency_seconds_count"], 2);
  EXPECT_EQ(v["strata_time_to_first_token_seconds_bucket{le=\"+Inf\"}"], 1);
  EXPECT_EQ(v["strata_completion_tokens_total"], 3);
  EXPECT_EQ(v["strata_engine_generated_tokens_total"], 3);
  EXPECT_EQ(v["strata_http_responses_total{code=\"400\"}"], 1) << met->body;
  EXPECT_GE(v["strata_http_responses_total{code=\"200\"}"], 3);
}

TEST(Serve, Refusals) {
  ServeOptions o;
  o.max_prompt_tokens = 32;
  o.max_tokens = 64;
  ServerFixture f(o);
  auto c = f.client();
  auto bad = c.Post("/v1/completions", "{not json", "application/json");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  expect_error_body(json::parse(bad->body), "not valid JSON");
  auto utf = c.Post("/v1/completions", "{\"prompt\": \"\xff\"}", "application/json");
  ASSERT_TRUE(utf);
  EXPECT_EQ(utf->status, 400);
  expect_error_body(json::parse(utf->body), "UTF-8");
  json e = post(c, "/v1/completions", {{"prompt", std::string(40, 'x')}}, 400);
  expect_error_body(e, "beyond this server's limit of 32");
  EXPECT_EQ(e["error"]["code"], "context_length_exceeded");
  e = post(c, "/v1/completions", {{"prompt", "x"}, {"max_tokens", 65}}, 400);
  expect_error_body(e, "in [1, 64]");
  EXPECT_EQ(e["error"]["param"], "max_tokens");
  e = post(c, "/v1/completions", {{"prompt", "x"}, {"temperature", -1}}, 400);
  expect_error_body(e, "temperature");
  e = post(c, "/v1/completions", {{"prompt", "x"}, {"model", "gpt-4o"}}, 404);
  expect_error_body(e, "does not exist");
  e = post(c, "/v1/completions", {{"prompt", ""}}, 400);
  expect_error_body(e, "prompt is empty");
  // The chat endpoint: this model has no chat template; a malformed body is refused first.
  e = post(c, "/v1/chat/completions", {{"messages", "hi"}}, 400);
  expect_error_body(e, "non-empty list");
  e = post(c, "/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", "hi"}}}}}, 400);
  expect_error_body(e, "no chat template");
  EXPECT_EQ(e["error"]["code"], "no_chat_template");
  auto nf = c.Get("/v1/nothing");
  ASSERT_TRUE(nf);
  EXPECT_EQ(nf->status, 404);
  expect_error_body(json::parse(nf->body), "no such endpoint");
  auto big = c.Post("/v1/completions", std::string(17u << 20, ' '), "application/json");  // beyond 16 MiB
  ASSERT_TRUE(big);
  EXPECT_EQ(big->status, 413);
  // The server still answers.
  auto c2 = f.client();
  post(c2, "/v1/completions", {{"prompt", "ok"}, {"max_tokens", 2}}, 200);
}

// The chat endpoint renders the model's template and answers what generate() gives for that prompt.
// Skipped while this branch has no chat template implementation (infer/chat_template_pending.cpp).
TEST(Serve, ChatRendersTheTemplate) {
  ServerFixture f({}, {}, nullptr, kChatTokenizerConfig);
  if (!f.server->chat_unavailable().empty()) GTEST_SKIP() << f.server->chat_unavailable();
  auto c = f.client();
  const std::vector<ChatMessage> msgs = {{"user", "hi"}, {"assistant", "hello"}, {"user", "again"}};
  const std::string rendered = ChatTemplate::from_tokenizer_config(kChatTokenizerConfig, "test").render(msgs, true);
  const auto want = expected_tokens(*f.lm.model, encode_bytes(rendered), 7);
  json messages = json::array();
  for (auto& m : msgs) messages.push_back({{"role", m.role}, {"content", m.content}});
  json r = post(c, "/v1/chat/completions", {{"messages", messages}, {"max_tokens", 7}, {"temperature", 0}}, 200);
  EXPECT_EQ(r["object"], "chat.completion");
  EXPECT_EQ(r["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(ids_of(r["choices"][0]["token_ids"]), want);
  EXPECT_EQ(r["usage"]["prompt_tokens"], rendered.size());
  auto s = c.Post("/v1/chat/completions", json{{"messages", messages}, {"max_tokens", 7}, {"temperature", 0}, {"stream", true}}.dump(),
                  "application/json");
  ASSERT_TRUE(s);
  const auto ev = sse_events(s->body);
  ASSERT_GE(ev.size(), 3u);
  EXPECT_EQ(json::parse(ev[0])["choices"][0]["delta"]["role"], "assistant");
  std::vector<int32_t> got;
  for (auto& e : ev)
    if (e != "[DONE]")
      for (int32_t t : ids_of(json::parse(e)["choices"][0]["token_ids"])) got.push_back(t);
  EXPECT_EQ(got, want);
}

// Engines that script the cases the real one makes timing-dependent.
namespace {
struct BusyEngine : Engine {
  int64_t submit(RequestParams, TokenCallback) override { throw EngineBusy("the queue is full (0 waiting)"); }
  void cancel(int64_t) override {}
  bool step() override { return false; }
  void wait_for_work(std::chrono::milliseconds t) override { std::this_thread::sleep_for(std::min(t, std::chrono::milliseconds(5))); }
  EngineStats stats() const override { return {}; }
  int64_t max_context() const override { return 1024; }
};
// Accepts requests and never runs them (a stuck engine): the server's timeout must end them.
struct SilentEngine : BusyEngine {
  std::atomic<int> cancels{0};
  int64_t submit(RequestParams, TokenCallback) override { return ++next; }
  void cancel(int64_t) override { ++cancels; }
  int64_t next = 0;
};
// Answers each request with one token after `delay` (a slow completion whose client keeps waiting).
struct DelayedEngine : BusyEngine {
  explicit DelayedEngine(std::chrono::milliseconds d) : delay(d) {}
  std::chrono::milliseconds delay;
  std::mutex mu;
  std::vector<std::pair<std::chrono::steady_clock::time_point, TokenCallback>> pending;
  int64_t submit(RequestParams, TokenCallback cb) override {
    std::lock_guard lk(mu);
    pending.emplace_back(std::chrono::steady_clock::now() + delay, std::move(cb));
    return int64_t(pending.size());
  }
  bool step() override {
    std::lock_guard lk(mu);
    bool did = false;
    for (size_t i = 0; i < pending.size(); ++i)
      if (pending[i].second && std::chrono::steady_clock::now() >= pending[i].first) {
        pending[i].second(TokenEvent{int64_t(i + 1), 5, FinishReason::length, ""});
        pending[i].second = nullptr;
        did = true;
      }
    return did;
  }
};
}  // namespace

TEST(Serve, QueueFullIs429) {
  ServerFixture f({}, {}, std::make_unique<BusyEngine>());
  auto c = f.client();
  json e = post(c, "/v1/completions", {{"prompt", "x"}}, 429);
  expect_error_body(e, "busy");
  EXPECT_EQ(e["error"]["code"], "queue_full");
}

TEST(Serve, EngineSettingsThatCannotWorkAreRefusedByName) {
  LoadedModel lm = tiny_loaded_model();
  EngineSettings es;
  es.cache_mib = 1;
  es.max_context = 1 << 20;  // one sequence's KV alone is larger than 1 MiB
  const std::string small = error_of([&] { make_engine("batch", *lm.model, es); });
  EXPECT_NE(small.find("--cache-mib 1"), std::string::npos) << small;
  const std::string unknown = error_of([&] { make_engine("vllm", *lm.model, EngineSettings{}); });
  EXPECT_NE(unknown.find("unknown engine 'vllm'"), std::string::npos) << unknown;
  EXPECT_NE(unknown.find("batch, serial"), std::string::npos) << unknown;
}

TEST(Serve, TimeoutEndsTheRequest) {
  ServeOptions o;
  o.timeout_s = 0.3;
  auto eng = std::make_unique<SilentEngine>();
  SilentEngine* raw = eng.get();
  ServerFixture f(o, {}, std::move(eng));
  auto c = f.client();
  json e = post(c, "/v1/completions", {{"prompt", "x"}}, 408);
  expect_error_body(e, "--timeout-s");
  EXPECT_EQ(raw->cancels.load(), 1);
  auto r = c.Post("/v1/completions", json{{"prompt", "x"}, {"stream", true}}.dump(), "application/json");
  ASSERT_TRUE(r);
  auto ev = sse_events(r->body);
  ASSERT_EQ(ev.size(), 2u) << r->body;
  expect_error_body(json::parse(ev[0]), "--timeout-s");
  EXPECT_EQ(ev[1], "[DONE]");
  EXPECT_EQ(raw->cancels.load(), 2);
}

// A request that would run for a long time, sent by a client that goes away: with streaming after
// its first token, without as soon as it has sent (nothing is written until the end then, so the
// server looks at the socket: serve/connection_probe.h). The request is cancelled and the engine
// is free again: a new request is answered.
namespace {
void expect_hang_up_cancels(bool stream) {
  ServeOptions o;
  o.max_tokens = 200000;
  EngineSettings es;
  es.max_context = 200064;
  ServerFixture f(o, es);
  const json body = {{"prompt", "never ending"}, {"max_tokens", 200000}, {"temperature", 0}, {"stream", stream}, {"ignore_eos", true}};
  const std::string got = post_and_hang_up(f.port, "/v1/completions", body.dump(), stream ? "token_ids" : "");
  if (stream) {
    ASSERT_NE(got.find("200 OK"), std::string::npos) << got;
  }
  EXPECT_TRUE(eventually([&] { return f.server->metrics().finished("cancelled") == 1; }))
      << "the request was not cancelled after its client went away (stream " << stream << ")";
  auto c = f.client();
  post(c, "/v1/completions", {{"prompt", "next"}, {"max_tokens", 3}}, 200);
  EXPECT_EQ(f.server->metrics().finished("length"), 1);
}
}  // namespace

TEST(Serve, ClientThatHangsUpCancelsItsRequest) { expect_hang_up_cancels(true); }

TEST(Serve, ClientThatHangsUpWithoutStreamingCancelsItsRequest) { expect_hang_up_cancels(false); }

// A client that keeps waiting is answered, however long it takes.
TEST(Serve, ClientThatWaitsForASlowCompletionIsAnswered) {
  ServerFixture f({}, {}, std::make_unique<DelayedEngine>(std::chrono::milliseconds(1800)));
  auto c = f.client();
  const json r = post(c, "/v1/completions", {{"prompt", "x"}, {"max_tokens", 1}}, 200);  // past several probes
  EXPECT_EQ(r["choices"][0]["finish_reason"], "length") << r.dump();
  EXPECT_EQ(f.server->metrics().finished("cancelled"), 0);
}

TEST(ServeCli, ServesATrainedCheckpointLikeGenerate) {
  namespace fs = std::filesystem;
  const std::string d = scratch_dir("serve_cli");
  write_text(d + "/a.yaml", tiny_config("", 10));
  ASSERT_EQ(run("train a.yaml train.run_dir=r --quiet", d).code, 0);
  const RunResult gen = run("generate --ckpt r --prompt 'the cat' --max-tokens 12 --temperature 0", d);
  ASSERT_EQ(gen.code, 0) << gen.out;
  ASSERT_EQ(run("serve --help", d).code, 0);

  const std::string log = d + "/serve.log";
  const std::string cmd = "cd '" + d + "' && exec '" + strata_bin() + "' serve --ckpt r --port 0 > serve.log 2>&1";
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", cmd.c_str(), (char*)nullptr);
    _exit(127);
  }
  // The address it prints: "... on http://127.0.0.1:PORT (...".
  int port = 0;
  eventually([&] {
    std::ifstream f(log);
    const std::string text{std::istreambuf_iterator<char>(f), {}};
    const size_t at = text.find("on http://127.0.0.1:");
    if (at != std::string::npos) port = std::atoi(text.c_str() + at + 20);
    return port > 0 || text.find("error") != std::string::npos;
  });
  std::string out;
  {
    std::ifstream f(log);
    out.assign(std::istreambuf_iterator<char>(f), {});
  }
  if (port <= 0) kill(pid, SIGKILL);
  ASSERT_GT(port, 0) << out;
  EXPECT_NE(out.find("try: curl"), std::string::npos) << out;
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(120);
  json r = post(c, "/v1/completions", {{"model", "r"}, {"prompt", "the cat"}, {"max_tokens", 12}, {"temperature", 0}}, 200);
  // generate prints the prompt, the completion and a newline.
  EXPECT_EQ("the cat" + r["choices"][0]["text"].get<std::string>() + "\n", gen.out);
  kill(pid, SIGTERM);
  int st = 0;
  waitpid(pid, &st, 0);
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 0);
  std::ifstream f(log);
  out.assign(std::istreambuf_iterator<char>(f), {});
  EXPECT_NE(out.find("POST /v1/completions 200"), std::string::npos) << out;  // the request's log line
  EXPECT_NE(out.find("SIGTERM received"), std::string::npos) << out;
  fs::remove_all(d);
}
