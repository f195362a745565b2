// The real `openai` Python client (PyPI; python/requirements-serve.txt, in a venv that
// scripts/python_env.sh builds) against strata serve in-process: tests/serve_openai_client.py
// checks completions (plain, streamed with usage: generate()'s greedy tokens), /v1/models, the
// errors the client raises, and chat where the model has a chat template. Skips, saying why, when
// the venv cannot be made (no network); under CI=true that is a failure instead.
#include "python_oracle.h"
#include "serve_testing.h"
#include "infer/chat_template.h"

using namespace strata;
using namespace strata::testing;

namespace {

std::string serve_python(std::string* why) {
  const std::string src = source_dir();
  std::string out;
  const int rc = run_command(shell_quote(src + "/scripts/python_env.sh") + " " + shell_quote(src + "/python/requirements-serve.txt"),
                             &out, true);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  const std::string venv = out.substr(out.rfind('\n') == std::string::npos ? 0 : out.rfind('\n') + 1);
  if (rc != 0) *why = "scripts/python_env.sh python/requirements-serve.txt failed (rc " + std::to_string(rc) + "): " +
                      out.substr(out.size() > 600 ? out.size() - 600 : 0);
  else if (!std::filesystem::exists(venv + "/bin/python")) *why = "scripts/python_env.sh printed '" + venv + "', which has no bin/python";
  else return venv + "/bin/python";
  const char* ci = std::getenv("CI");
  if (ci && std::string(ci) == "true") ADD_FAILURE() << "CI=true and the openai venv is unavailable: " << *why;
  return "";
}

}  // namespace

static int run_client(const std::string& py, const std::string& mode, const std::string& url, const nlohmann::json& expected) {
  std::string out;
  const int rc = run_command(shell_quote(py) + " " + shell_quote(source_dir() + "/tests/serve_openai_client.py") + " " + mode + " " +
                                 shell_quote(url) + " tiny " + shell_quote(expected.dump()),
                             &out, true);
  std::printf("%s", out.c_str());
  EXPECT_EQ(rc, 0) << out;
  return rc;
}

TEST(ServeOpenAIClient, CompletionsStreamingErrors) {
  std::string why;
  const std::string py = serve_python(&why);
  if (py.empty()) GTEST_SKIP() << why;
  ServerFixture f;
  const std::string prompt = "The openai client says";
  const int n = 10;
  const auto ids = expected_tokens(*f.lm.model, encode_bytes(prompt), n);
  run_client(py, "completions", f.base_url(), {{"prompt", prompt}, {"max_tokens", n}, {"ids", ids}});
}

TEST(ServeOpenAIClient, Chat) {
  ServerFixture f({}, {}, nullptr, kChatTokenizerConfig);
  if (!f.server->chat_unavailable().empty()) GTEST_SKIP() << f.server->chat_unavailable();
  std::string why;
  const std::string py = serve_python(&why);
  if (py.empty()) GTEST_SKIP() << why;
  const std::vector<ChatMessage> msgs = {{"system", "Be brief."}, {"user", "Say hello."}};
  const std::string rendered = ChatTemplate::from_tokenizer_config(kChatTokenizerConfig, "test").render(msgs, true);
  const int n = 8;
  const auto ids = expected_tokens(*f.lm.model, encode_bytes(rendered), n);
  nlohmann::json messages = nlohmann::json::array();
  for (auto& m : msgs) messages.push_back({{"role", m.role}, {"content", m.content}});
  run_client(py, "chat", f.base_url(), {{"messages", messages}, {"max_tokens", n}, {"ids", ids}});
}
