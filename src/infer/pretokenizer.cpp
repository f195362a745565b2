#include "infer/pretokenizer.h"

#include <nlohmann/json.hpp>

#include "infer/json_fields.h"

#include "infer/byte_level.h"

namespace strata {

using json_fields::fail;
using json_fields::Where;

// The pattern of GPT-2's encoder.py, which the ByteLevel pre-tokenizer applies when use_regex.
static const Regex& gpt2_regex() {
  static const Regex re =
      Regex::compile(R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)", false,
                     "ByteLevel pre-tokenizer");
  return re;
}

void split_pieces(std::string_view s, const std::vector<std::pair<size_t, size_t>>& matches, SplitBehavior behavior,
                  bool invert, std::vector<std::pair<size_t, size_t>>& out) {
  // The whole of s as alternating (range, is_match) segments, as tokenizers' Pattern::find_matches.
  struct Seg {
    size_t a, b;
    bool match;
  };
  std::vector<Seg> segs;
  if (s.empty()) {
    segs.push_back({0, 0, false});
  } else {
    size_t prev = 0;
    for (auto [a, b] : matches) {
      if (prev != a) segs.push_back({prev, a, false});
      segs.push_back({a, b, true});
      prev = b;
    }
    if (prev != s.size()) segs.push_back({prev, s.size(), false});
  }
  if (invert)
    for (auto& g : segs) g.match = !g.match;

  auto emit = [&](size_t a, size_t b) {
    if (b > a) out.emplace_back(a, b);
  };
  switch (behavior) {
    case SplitBehavior::Isolated:
      for (auto& g : segs) emit(g.a, g.b);
      break;
    case SplitBehavior::Removed:
      for (auto& g : segs)
        if (!g.match) emit(g.a, g.b);
      break;
    case SplitBehavior::MergedWithPrevious: {
      // A match joins the piece before it (unless that piece was itself a match).
      std::vector<std::pair<size_t, size_t>> acc;
      bool prev_match = false;
      for (auto& g : segs) {
        if (g.match && !prev_match && !acc.empty()) acc.back().second = g.b;
        else acc.emplace_back(g.a, g.b);
        prev_match = g.match;
      }
      for (auto [a, b] : acc) emit(a, b);
      break;
    }
    case SplitBehavior::MergedWithNext: {
      // Mirror image: walk backwards, a match joins the piece after it.
      std::vector<std::pair<size_t, size_t>> acc;
      bool prev_match = false;
      for (auto g = segs.rbegin(); g != segs.rend(); ++g) {
        if (g->match && !prev_match && !acc.empty()) acc.back().first = g->a;
        else acc.emplace_back(g->a, g->b);
        prev_match = g->match;
      }
      for (auto it = acc.rbegin(); it != acc.rend(); ++it) emit(it->first, it->second);
      break;
    }
    case SplitBehavior::Contiguous: {
      std::vector<std::pair<size_t, size_t>> acc;
      bool prev_match = false;
      for (auto& g : segs) {
        if (g.match == prev_match && !acc.empty()) acc.back().second = g.b;
        else acc.emplace_back(g.a, g.b);
        prev_match = g.match;
      }
      for (auto [a, b] : acc) emit(a, b);
      break;
    }
  }
}

static void apply(const ByteLevelStep& st, std::string_view text, std::vector<std::string>& out,
                  std::vector<std::pair<size_t, size_t>>& scratch) {
  std::string prefixed;
  if (st.add_prefix_space && (text.empty() || text[0] != ' ')) {
    prefixed = " ";
    prefixed += text;
    text = prefixed;
  }
  auto push = [&](std::string_view piece) {
    if (piece.empty()) return;
    std::string mapped;
    mapped.reserve(piece.size() + piece.size() / 4);
    byte_level::encode(piece, mapped);
    out.push_back(std::move(mapped));
  };
  if (!st.use_regex) return push(text);
  scratch.clear();
  gpt2_regex().find_all(text, scratch);
  std::vector<std::pair<size_t, size_t>> pieces;
  split_pieces(text, scratch, SplitBehavior::Isolated, false, pieces);
  for (auto [a, b] : pieces) push(text.substr(a, b - a));
}

static void apply(const SplitStep& st, std::string_view text, std::vector<std::string>& out,
                  std::vector<std::pair<size_t, size_t>>& scratch) {
  scratch.clear();
  st.regex.find_all(text, scratch);
  std::vector<std::pair<size_t, size_t>> pieces;
  split_pieces(text, scratch, st.behavior, st.invert, pieces);
  for (auto [a, b] : pieces) out.emplace_back(text.substr(a, b - a));
}

void PreTokenizer::split(std::string_view text, std::vector<std::string>& out) const {
  if (text.empty()) return;
  std::vector<std::pair<size_t, size_t>> scratch;
  if (steps_.empty()) {
    out.emplace_back(text);
    return;
  }
  if (steps_.size() == 1) {
    std::visit([&](const auto& st) { apply(st, text, out, scratch); }, steps_[0]);
    return;
  }
  std::vector<std::string> cur{std::string(text)}, next;
  for (const auto& step : steps_) {
    next.clear();
    for (const auto& piece : cur) std::visit([&](const auto& st) { apply(st, piece, next, scratch); }, step);
    std::swap(cur, next);
  }
  for (auto& p : cur) out.push_back(std::move(p));
}

static SplitBehavior parse_behavior(const nlohmann::json& j, const Where& w) {
  std::string b = json_fields::get_string(j, "behavior", w);
  if (b == "Removed") return SplitBehavior::Removed;
  if (b == "Isolated") return SplitBehavior::Isolated;
  if (b == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::MergedWithNext;
  if (b == "Contiguous") return SplitBehavior::Contiguous;
  fail(w / "behavior", "'" + b + "' is not one of Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous");
}

static void parse_into(const nlohmann::json& j, const Where& w, std::vector<PreTokenizerStep>& steps) {
  std::string type = json_fields::type_of(j, w);
  if (type == "Sequence") {
    const auto& list = json_fields::need_array(j, "pretokenizers", w);
    for (size_t i = 0; i < list.size(); ++i) parse_into(list[i], (w / "pretokenizers")[i], steps);
  } else if (type == "ByteLevel") {
    ByteLevelStep st;
    st.add_prefix_space = json_fields::get_bool(j, "add_prefix_space", true, w);
    st.use_regex = json_fields::get_bool(j, "use_regex", true, w);
    steps.push_back(st);
  } else if (type == "Split") {
    SplitStep st;
    const auto& pat = json_fields::need(j, "pattern", w);
    bool literal;
    std::string text;
    if (pat.is_object() && pat.contains("Regex") && pat["Regex"].is_string()) {
      literal = false, text = pat["Regex"].get<std::string>();
    } else if (pat.is_object() && pat.contains("String") && pat["String"].is_string()) {
      literal = true, text = pat["String"].get<std::string>();
    } else {
      fail(w / "pattern", "expected {\"Regex\": \"...\"} or {\"String\": \"...\"}, got " + pat.dump());
    }
    Where wp = w / "pattern";
    st.regex = Regex::compile(text, literal, wp.file + ": " + wp.at);
    st.behavior = parse_behavior(j, w);
    st.invert = json_fields::get_bool(j, "invert", false, w);
    steps.push_back(std::move(st));
  } else {
    fail(w, "pre-tokenizer type '" + type + "' is not supported (supported: ByteLevel, Split, Sequence, null)");
  }
}

PreTokenizer PreTokenizer::from_json(const nlohmann::json& j, const Where& w) {
  PreTokenizer p;
  if (!j.is_null()) parse_into(j, w, p.steps_);
  return p;
}

}  // namespace strata
