#pragma once
// A Hugging Face tokenizer.json for byte-level BPE (GPT-2, Llama-3, Qwen2 families), encoding and
// decoding exactly as the Rust `tokenizers` library does. The pipeline of tokenizers::encode:
//   1. added tokens that are not "normalized" are cut out of the raw text (never split further);
//   2. each remaining piece is normalized (NFC/NFD/NFKC/NFKD, or nothing), and "normalized" added
//      tokens are cut out of it;
//   3. the pre-tokenizer splits each piece into pre-tokens (ByteLevel, Split, Sequence);
//   4. the BPE model turns each pre-token into ids;
//   5. the post-processor adds the template's special tokens (e.g. BOS) iff add_special_tokens.
// Anything else a tokenizer.json may hold is refused at load, by name, with an InputError.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "infer/added_tokens.h"
#include "infer/bpe.h"
#include "infer/pretokenizer.h"
#include "infer/unicode.h"

namespace strata {

class Tokenizer {
 public:
  static Tokenizer from_file(const std::string& tokenizer_json_path);  // InputError naming file + reason
  static Tokenizer from_json(const std::string& json_text, const std::string& what = "tokenizer.json");

  // text must be well-formed UTF-8 (InputError naming the byte offset otherwise). The template's
  // special tokens (BOS for Llama-3) are added iff add_special_tokens.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = true) const;

  // The bytes the ids stand for. Ids without a token are skipped, as tokenizers does; with
  // skip_special_tokens, special added tokens are too. A cut through a multi-byte character
  // (a partial token, a prefix of a generation) gives its bytes as they are: decode never throws,
  // and decode(encode(x)) == x for well-formed x. tokenizers' own decode replaces ill-formed
  // sequences by U+FFFD: that is unicode::utf8_lossy(decode(ids)).
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;

  int64_t vocab_size() const { return vocab_size_; }  // max id + 1 over vocab and added tokens
  std::optional<int32_t> token_to_id(const std::string& token) const;
  std::optional<std::string> id_to_token(int32_t id) const;  // the vocabulary string (byte-level form)
  const std::string& json() const { return json_; }          // the original text, to embed in a checkpoint

  // Steps 1-3 only: the pre-tokens (added tokens as their content), for tests and debugging.
  std::vector<std::string> pre_tokenize(std::string_view text) const;
  const std::vector<AddedToken>& added_tokens() const { return added_.tokens(); }

 private:
  void pieces(std::string_view text, std::vector<Piece>& out) const;
  std::string normalize(std::string_view s) const;

  std::string json_;
  std::vector<unicode::NormalForm> normalizer_;  // applied in order; empty: none
  PreTokenizer pre_tokenizer_;
  Bpe model_;
  AddedVocabulary added_;
  // The single-sequence template, flattened: prefix + $A + suffix.
  std::vector<int32_t> prefix_ids_, suffix_ids_;
  // Decoding tables, by id: the bytes of the token, whether it is a special token, whether it exists.
  std::vector<std::string> bytes_of_;
  std::vector<uint8_t> special_, known_;
  int64_t vocab_size_ = 0;
};

}  // namespace strata
