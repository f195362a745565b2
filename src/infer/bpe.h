#pragma once
// The BPE model of `tokenizers` (models/bpe): a vocabulary (token -> id) and a ranked merge list.
// A pre-token is split into characters, each looked up in the vocabulary, and adjacent pairs are
// merged lowest rank first (leftmost first among equal ranks) until no listed pair is left. With
// ignore_merges (Llama-3), a pre-token that is itself in the vocabulary is emitted whole.
// Results per pre-token are cached; the cache is thread-safe and each copy starts its own.
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>


namespace strata {

namespace json_fields {
struct Where;  // infer/json_fields.h
}

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <class T>
using StringMap = std::unordered_map<std::string, T, StringHash, std::equal_to<>>;

class Bpe {
 public:
  // From tokenizer.json's "model" (type BPE). Options other than the byte-level BPE ones
  // (dropout, byte_fallback, a continuing_subword_prefix or end_of_word_suffix) are refused.
  static Bpe from_json(const nlohmann::json& model, const json_fields::Where& w);

  // Appends the ids of one pre-token (in the vocabulary's alphabet) to out. Characters missing
  // from the vocabulary become unk_token if there is one and are dropped otherwise, as in tokenizers.
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;
  const std::string* id_to_token(int32_t id) const;  // nullptr for an id with no token
  size_t entries() const { return vocab_.size(); }   // tokenizers' get_vocab_size()
  int64_t max_id() const { return int64_t(vocab_r_.size()) - 1; }

 private:
  struct Merge {
    uint32_t rank;
    int32_t new_id;
  };
  static uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
  void merge_word(std::string_view word, std::vector<int32_t>& out) const;

  StringMap<int32_t> vocab_;
  std::vector<std::string> vocab_r_;  // id -> token ("" where no token has the id)
  std::vector<bool> has_id_;
  std::unordered_map<uint64_t, Merge> merges_;
  bool ignore_merges_ = false;
  std::optional<int32_t> unk_id_;
  bool fuse_unk_ = false;

  // pre-token -> ids. Copying a Bpe gives the copy an empty cache of its own.
  struct Cache {
    mutable std::shared_mutex mu;
    StringMap<std::vector<int32_t>> map;
    Cache() = default;
    Cache(const Cache&) {}
    Cache& operator=(const Cache&) { return *this; }
  };
  mutable Cache cache_;
};

}  // namespace strata
