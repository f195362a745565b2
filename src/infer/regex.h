#pragma once
// A compiled regular expression (PCRE2, UTF + UCP, JIT when available) that matches the way the
// Oniguruma engine inside Hugging Face `tokenizers` does for the patterns tokenizer.json files use:
// \p{L}, \p{N}, \s, (?i:...), (?!\S), possessive quantifiers. Where the two syntaxes differ, the
// pattern is rewritten on compile (see to_pcre2 in regex.cpp). Compiled once; shared by copies;
// matching is thread-safe.
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct pcre2_real_code_8;

namespace strata {

class Regex {
 public:
  // `what` names the pattern in errors (e.g. "tokenizer.json: pre_tokenizer.pretokenizers[0]").
  // literal: match the text itself (Split's {"String": ...} pattern), not a regex.
  static Regex compile(std::string_view pattern, bool literal, const std::string& what);

  // Byte ranges [start, end) of the successive non-overlapping matches in s (s well-formed
  // UTF-8), as Oniguruma's find_iter yields them: an empty match right where the previous match
  // ended is skipped. Results are appended to out.
  void find_all(std::string_view s, std::vector<std::pair<size_t, size_t>>& out) const;

  const std::string& pattern() const { return pattern_; }

 private:
  std::shared_ptr<pcre2_real_code_8> code_;
  std::string pattern_;  // as given (before rewriting), for messages
  std::string what_;
};

// The Oniguruma pattern rewritten for PCRE2 (exposed for tests).
std::string onig_to_pcre2(std::string_view pattern);

}  // namespace strata
