// ChatTemplate against transformers' apply_chat_template: every fixture under tests/data/chat_templates
// (tokenizer_config.json excerpts of the supported architectures' instruct models, see its README),
// over conversations with system/user/assistant turns, add_generation_prompt off and on, unicode and
// empty content, must render byte for byte what transformers renders, and refuse what it refuses.
// Also: reading tokenizer_config.json (template lists, AddedToken special tokens) and its errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "infer/chat_template.h"
#include "python_oracle.h"
#include "temp_dir.h"

namespace fs = std::filesystem;
using strata::ChatMessage;
using strata::ChatTemplate;
using strata::InputError;

namespace {

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::vector<fs::path> fixtures() {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(fs::path(strata::testing::source_dir()) / "tests/data/chat_templates"))
    if (e.path().extension() == ".json") out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::vector<ChatMessage>> conversations() {
  return {
      {{"user", "Hello"}},
      {{"system", "You are a helpful assistant"}, {"user", "Hello"}, {"assistant", "Hi there"}, {"user", "Who are you"}},
      {{"user", "  spaces and\nnewlines  "}, {"assistant", "   I am an assistant   "}, {"user", "Another question\n"}},
      {{"system", "Tu es un assistant. 日本語 😀"},
       {"user", "Ça va? Ünïcödé — ß ﬁ"},
       {"assistant", "\u00a0fine\u3000thanks\u2028"},
       {"user", "Ελληνικά ΣΊΣΥΦΟΣ"}},
      {{"user", ""}},
      {{"system", ""}, {"user", ""}, {"assistant", ""}, {"user", "x"}},
      {{"user", "What is 2+2?"}, {"assistant", "<think>\nadd them\n</think>\n\n4"}, {"user", "And 3+3?"}},
      {{"user", "a"}, {"user", "b"}},
      {{"assistant", "I start"}},
      {{"user", "quotes ' \" \\ {{ }} {% %} <|eot_id|>"}, {"assistant", "tab\there"}},
  };
}

}  // namespace

TEST(ChatTemplate, MatchesTransformersOnEveryFixture) {
  std::string why;
  std::string python = strata::testing::test_python(&why);
  if (python.empty()) GTEST_SKIP() << "no Python oracle venv: " << why;
  strata::testing::TempDir dir("chat_template_");
  auto convs = conversations();
  nlohmann::json jc = nlohmann::json::array();
  for (const auto& c : convs) {
    nlohmann::json jm = nlohmann::json::array();
    for (const auto& m : c) jm.push_back({{"role", m.role}, {"content", m.content}});
    jc.push_back(jm);
  }
  std::ofstream(dir / "conversations.json") << jc.dump();
  std::string cmd = strata::testing::shell_quote(python) + " " +
                    strata::testing::shell_quote(strata::testing::source_dir() + "/tests/chat_template_oracle.py") + " " +
                    strata::testing::shell_quote(dir / "conversations.json");
  auto files = fixtures();
  ASSERT_GE(files.size(), 8u);
  for (const auto& f : files) cmd += " " + strata::testing::shell_quote(f.string());
  std::string out;
  int rc = strata::testing::run_command(cmd + " 2>" + strata::testing::shell_quote(dir / "stderr.txt"), &out);
  ASSERT_EQ(rc, 0) << "oracle failed: " << read_file(dir.path / "stderr.txt");
  nlohmann::json want = nlohmann::json::parse(out);

  int compared = 0, refused = 0;
  for (const auto& f : files) {
    SCOPED_TRACE(f.filename().string());
    std::unique_ptr<ChatTemplate> t;
    try {
      t = std::make_unique<ChatTemplate>(ChatTemplate::from_tokenizer_config(read_file(f), f.filename().string()));
    } catch (const InputError& e) {
      ADD_FAILURE() << "template refused: " << e.what();
      continue;
    }
    const auto& results = want.at(f.filename().string());
    ASSERT_EQ(results.size(), convs.size() * 2);
    for (size_t c = 0; c < convs.size(); ++c) {
      for (int agp = 0; agp < 2; ++agp) {
        const auto& r = results[c * 2 + agp];
        SCOPED_TRACE("conversation " + std::to_string(c) + ", add_generation_prompt=" + std::to_string(agp));
        if (r.at("ok").get<bool>()) {
          try {
            EXPECT_EQ(t->render(convs[c], agp), r.at("text").get<std::string>());
          } catch (const InputError& e) {
            ADD_FAILURE() << "render failed where transformers rendered: " << e.what();
          }
          ++compared;
        } else {
          EXPECT_THROW(t->render(convs[c], agp), InputError) << "transformers refused: " << r.at("error");
          ++refused;
        }
      }
    }
  }
  std::printf("%zu templates: %d renders compared byte for byte, %d refusals matched\n", files.size(), compared, refused);
}

TEST(ChatTemplate, ReadsTemplateListsAndAddedTokens) {
  std::string cfg = R"({
    "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false},
    "eos_token": "</s>", "pad_token": null,
    "chat_template": [{"name": "tool_use", "template": "TOOLS"},
                      {"name": "default", "template": "{{ bos_token }}|{{ eos_token }}|{{ pad_token is defined }}|{{ messages[0].content }}"}]
  })";
  ChatTemplate t = ChatTemplate::from_tokenizer_config(cfg, "cfg");
  EXPECT_EQ(t.render({{"user", "hi"}}, false), "<s>|</s>|False|hi");
}

TEST(ChatTemplate, ErrorsNameTheProblem) {
  auto msg = [](const std::string& cfg) {
    try {
      ChatTemplate::from_tokenizer_config(cfg, "model-x");
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(msg(R"({"eos_token": "</s>"})").find("no chat_template"), std::string::npos);
  EXPECT_NE(msg("not json").find("not a JSON object"), std::string::npos);
  EXPECT_NE(msg(R"({"chat_template": [{"name": "rag", "template": "x"}]})").find("(it has: rag)"), std::string::npos);
  std::string m = msg(R"({"chat_template": "line one\n{% include 'x.j2' %}"})");
  EXPECT_NE(m.find("model-x"), std::string::npos) << m;
  EXPECT_NE(m.find("line 2"), std::string::npos) << m;
  EXPECT_NE(m.find("include"), std::string::npos) << m;

  ChatTemplate t = ChatTemplate::from_tokenizer_config(
      R"({"chat_template": "{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}ok"})", "m");
  EXPECT_EQ(t.render({{"user", "x"}}, true), "ok");
  try {
    t.render({{"system", "x"}}, true);
    ADD_FAILURE() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("System role not supported"), std::string::npos) << e.what();
  }
}
