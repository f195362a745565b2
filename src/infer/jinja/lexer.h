#pragma once
// Jinja's lexer with the settings transformers renders chat templates with (trim_blocks and
// lstrip_blocks on, keep_trailing_newline off): the template becomes text runs and the tokens of
// its {{ }} and {% %} tags, whitespace control ({%- -%} {%+ +%}) already applied to the text.
#include <cstdint>
#include <string>
#include <vector>

namespace strata::jinja {

struct Token {
  enum class Type { Data, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Int, Float, Op, Eof };
  Type type;
  std::string text;  // Data: the text; Name/Op: the name or operator; String: the unescaped value
  int line;
  int64_t i = 0;
  double f = 0;
};

struct SyntaxError {
  std::string message;
  int line;
};

std::vector<Token> lex(const std::string& source);

}  // namespace strata::jinja
