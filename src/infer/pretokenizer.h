#pragma once
// Pre-tokenization as `tokenizers` does it for byte-level BPE: a sequence of steps, each splitting
// every current piece into smaller ones (empty pieces dropped), before the model sees them.
//   ByteLevel{add_prefix_space, use_regex}: optional leading ' ', GPT-2's regex split, then every
//     byte mapped to its byte-level character (infer/byte_level.h).
//   Split{pattern: Regex|String, behavior, invert}: split on the pattern's matches.
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "infer/regex.h"

namespace strata {

namespace json_fields {
struct Where;  // infer/json_fields.h
}

// What becomes of the matches of a Split (the SplitDelimiterBehavior of `tokenizers`), for "a-b" on "-":
// Removed a|b, Isolated a|-|b, MergedWithPrevious a-|b, MergedWithNext a|-b, Contiguous (runs of
// matches and of non-matches each one piece) a|-|b.
enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

struct ByteLevelStep {
  bool add_prefix_space = false;
  bool use_regex = true;
};
struct SplitStep {
  Regex regex;
  SplitBehavior behavior = SplitBehavior::Isolated;
  bool invert = false;  // the non-matches are the delimiters
};
using PreTokenizerStep = std::variant<ByteLevelStep, SplitStep>;

// Pieces of s given the successive matches of a regex (invert and behavior applied), appended to
// out as byte ranges; empty ones dropped.
void split_pieces(std::string_view s, const std::vector<std::pair<size_t, size_t>>& matches, SplitBehavior behavior,
                  bool invert, std::vector<std::pair<size_t, size_t>>& out);

class PreTokenizer {
 public:
  // From tokenizer.json's "pre_tokenizer" (null: none). Unsupported types are refused by name.
  static PreTokenizer from_json(const nlohmann::json& j, const json_fields::Where& w);

  // Splits one piece of (normalized) text; the pre-tokens, none empty, are appended to out.
  void split(std::string_view text, std::vector<std::string>& out) const;

  const std::vector<PreTokenizerStep>& steps() const { return steps_; }

 private:
  std::vector<PreTokenizerStep> steps_;
};

}  // namespace strata
