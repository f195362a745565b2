#pragma once
// The added (and special) tokens of a tokenizer.json, matched in the text before anything else and
// never split, as tokenizers' AddedVocabulary does: leftmost-longest matching (Aho-Corasick style,
// here a byte trie), then the single_word / lstrip / rstrip rules per token. Tokens flagged
// "normalized" are matched in the normalized text (their content normalized the same way); the
// others in the raw text.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace strata {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool single_word = false;  // only where not inside a word (\w on neither side)
  bool lstrip = false;       // also takes the whitespace on its left
  bool rstrip = false;       // also takes the whitespace on its right
  bool normalized = true;    // matched in the normalized text
};

// A piece of text on its way through the tokenizer: an added token already (id >= 0) or text.
struct Piece {
  std::string text;
  int32_t id = -1;
};

// Leftmost-longest matcher over a set of patterns (the first-listed wins among equal patterns).
class TokenTrie {
 public:
  void add(std::string_view pattern, int32_t value);
  bool empty() const { return nodes_.size() <= 1; }
  // First match at or after `from`: sets [*start, *end) and returns its value, or -1 if none.
  int32_t find(std::string_view s, size_t from, size_t* start, size_t* end) const;

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> kids;
    int32_t value = -1;
  };
  std::vector<Node> nodes_{Node{}};
  std::array<bool, 256> first_{};  // bytes that can start a match
};

class AddedVocabulary {
 public:
  // Registers the tokens (already given their ids) and builds the two matchers; the patterns of
  // normalized tokens are passed through `normalize` first.
  template <class Normalize>
  void build(std::vector<AddedToken> tokens, const Normalize& normalize) {
    tokens_ = std::move(tokens);
    raw_ = TokenTrie{};
    norm_ = TokenTrie{};
    // tokenizers builds its matchers from the special tokens first, then the others.
    for (int pass = 0; pass < 2; ++pass)
      for (size_t i = 0; i < tokens_.size(); ++i) {
        const AddedToken& t = tokens_[i];
        if (t.special != (pass == 0) || t.content.empty()) continue;
        if (t.normalized) norm_.add(normalize(t.content), int32_t(i));
        else raw_.add(t.content, int32_t(i));
      }
  }

  // Splits `text` at the added tokens of one set (normalized or raw); the pieces, none empty,
  // are appended to out.
  void split(std::string_view text, bool normalized_set, std::vector<Piece>& out) const;
  bool has(bool normalized_set) const { return !(normalized_set ? norm_ : raw_).empty(); }

  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  std::vector<AddedToken> tokens_;
  TokenTrie raw_, norm_;  // values: index into tokens_
};

}  // namespace strata
