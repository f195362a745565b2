#include "infer/added_tokens.h"

#include <algorithm>

#include "infer/unicode.h"

namespace strata {

void TokenTrie::add(std::string_view pattern, int32_t value) {
  if (pattern.empty()) return;
  int32_t n = 0;
  for (char ch : pattern) {
    auto c = static_cast<unsigned char>(ch);
    auto& kids = nodes_[size_t(n)].kids;
    auto it = std::find_if(kids.begin(), kids.end(), [c](const auto& k) { return k.first == c; });
    if (it != kids.end()) {
      n = it->second;
    } else {
      int32_t m = int32_t(nodes_.size());
      nodes_[size_t(n)].kids.emplace_back(c, m);
      nodes_.emplace_back();
      n = m;
    }
  }
  if (nodes_[size_t(n)].value < 0) nodes_[size_t(n)].value = value;
  first_[static_cast<unsigned char>(pattern[0])] = true;
}

int32_t TokenTrie::find(std::string_view s, size_t from, size_t* start, size_t* end) const {
  for (size_t i = from; i < s.size(); ++i) {
    if (!first_[static_cast<unsigned char>(s[i])]) continue;
    int32_t n = 0, best = -1;
    size_t best_end = 0;
    for (size_t j = i; j < s.size(); ++j) {
      auto c = static_cast<unsigned char>(s[j]);
      const auto& kids = nodes_[size_t(n)].kids;
      auto it = std::find_if(kids.begin(), kids.end(), [c](const auto& k) { return k.first == c; });
      if (it == kids.end()) break;
      n = it->second;
      if (nodes_[size_t(n)].value >= 0) best = nodes_[size_t(n)].value, best_end = j + 1;
    }
    if (best >= 0) {
      *start = i, *end = best_end;
      return best;
    }
  }
  return -1;
}

// The regexes tokenizers uses for these rules are the Rust regex crate's \w and \s (Unicode).
static bool ends_with_word(std::string_view s) {
  if (s.empty()) return false;
  size_t i = s.size();
  return unicode::is_word_char(unicode::prev_code_point(s, i));
}
static bool starts_with_word(std::string_view s) {
  if (s.empty()) return false;
  size_t i = 0;
  return unicode::is_word_char(unicode::next_code_point(s, i));
}
// Start of the run of whitespace that ends s (s.size() if none).
static size_t trailing_space_start(std::string_view s) {
  size_t i = s.size();
  while (i > 0) {
    size_t j = i;
    if (!unicode::is_white_space(unicode::prev_code_point(s, j))) break;
    i = j;
  }
  return i;
}
// Length of the run of whitespace that starts s.
static size_t leading_space_len(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    size_t j = i;
    if (!unicode::is_white_space(unicode::next_code_point(s, j))) break;
    i = j;
  }
  return i;
}

// tokenizers' AddedVocabulary::find_matches + split_with_indices. A match discarded by
// single_word does not re-open the text it covered: the search goes on from its end.
void AddedVocabulary::split(std::string_view s, bool normalized_set, std::vector<Piece>& out) const {
  const TokenTrie& trie = normalized_set ? norm_ : raw_;
  auto emit = [&](size_t a, size_t b, int32_t id) {
    if (b > a) out.push_back({std::string(s.substr(a, b - a)), id});
  };
  size_t start_offset = 0, pos = 0, ms = 0, me = 0;
  int32_t k;
  while (!trie.empty() && (k = trie.find(s, pos, &ms, &me)) >= 0) {
    pos = me;
    const AddedToken& t = tokens_[size_t(k)];
    if (t.single_word) {
      bool start_space = ms == 0 || !ends_with_word(s.substr(0, ms));
      bool stop_space = me == s.size() || !starts_with_word(s.substr(me));
      if (!start_space || !stop_space) continue;
    }
    size_t start = ms, stop = me;
    if (t.lstrip) start = std::max(trailing_space_start(s.substr(0, start)), start_offset);
    if (t.rstrip) stop += leading_space_len(s.substr(stop));
    if (start_offset < start) emit(start_offset, start, -1);
    emit(start, stop, t.id);
    start_offset = stop;
  }
  if (start_offset < s.size()) emit(start_offset, s.size(), -1);
}

}  // namespace strata
