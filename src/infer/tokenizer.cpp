#include "infer/tokenizer.h"

#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "infer/byte_level.h"
#include "infer/json_fields.h"

namespace strata {

using Json = nlohmann::json;
using json_fields::fail;
using json_fields::Where;

namespace {

void parse_normalizer(const Json& j, const Where& w, std::vector<unicode::NormalForm>& out) {
  if (j.is_null()) return;
  std::string type = json_fields::type_of(j, w);
  if (type == "Sequence") {
    const auto& list = json_fields::need_array(j, "normalizers", w);
    for (size_t i = 0; i < list.size(); ++i) parse_normalizer(list[i], (w / "normalizers")[i], out);
  } else if (type == "NFC") {
    out.push_back(unicode::NormalForm::NFC);
  } else if (type == "NFD") {
    out.push_back(unicode::NormalForm::NFD);
  } else if (type == "NFKC") {
    out.push_back(unicode::NormalForm::NFKC);
  } else if (type == "NFKD") {
    out.push_back(unicode::NormalForm::NFKD);
  } else {
    fail(w, "normalizer type '" + type + "' is not supported (supported: NFC, NFD, NFKC, NFKD, Sequence, null)");
  }
}

// Post-processors that change ids wrap the sequence in special tokens; a chain of them nests.
void parse_post_processor(const Json& j, const Where& w, std::vector<int32_t>& prefix, std::vector<int32_t>& suffix) {
  if (j.is_null()) return;
  std::string type = json_fields::type_of(j, w);
  if (type == "Sequence") {
    const auto& list = json_fields::need_array(j, "processors", w);
    for (size_t i = 0; i < list.size(); ++i) parse_post_processor(list[i], (w / "processors")[i], prefix, suffix);
  } else if (type == "ByteLevel") {
    // Adjusts offsets only; ids are untouched.
  } else if (type == "TemplateProcessing") {
    const auto& single = json_fields::need_array(j, "single", w);
    const auto& specials = json_fields::need(j, "special_tokens", w);
    std::vector<int32_t> pre, post;
    int seen_a = 0;
    for (size_t i = 0; i < single.size(); ++i) {
      const auto& item = single[i];
      Where wi = (w / "single")[i];
      if (item.is_object() && item.contains("Sequence")) {
        std::string seq = json_fields::get_string(item["Sequence"], "id", wi / "Sequence");
        if (seq != "A") fail(wi, "the single-sequence template refers to sequence '" + seq + "'; only A exists");
        ++seen_a;
      } else if (item.is_object() && item.contains("SpecialToken")) {
        std::string name = json_fields::get_string(item["SpecialToken"], "id", wi / "SpecialToken");
        if (!specials.is_object() || !specials.contains(name))
          fail(w / "special_tokens", "has no entry '" + name + "' used by the template");
        Where ws = w / "special_tokens" / name;
        const auto& ids = json_fields::need_array(specials[name], "ids", ws);
        for (const auto& id : ids) {
          if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX)
            fail(ws / "ids", "expected non-negative integer ids, got " + id.dump());
          (seen_a ? post : pre).push_back(int32_t(id.get<int64_t>()));
        }
      } else {
        fail(wi, "expected {\"Sequence\": ...} or {\"SpecialToken\": ...}, got " + item.dump());
      }
    }
    if (seen_a != 1) fail(w / "single", "the template must hold $A exactly once");
    prefix.insert(prefix.begin(), pre.begin(), pre.end());
    suffix.insert(suffix.end(), post.begin(), post.end());
  } else {
    fail(w, "post-processor type '" + type +
                "' is not supported (supported: TemplateProcessing, ByteLevel, Sequence, null)");
  }
}

// The ByteLevel decoder, alone or as the one member of a Sequence (nested or not).
void parse_decoder(const Json& j, const Where& w, int& byte_levels) {
  const char* supported = " (supported: ByteLevel, or a Sequence holding one ByteLevel)";
  if (j.is_null()) fail(w, std::string("decoder null is not supported") + supported);
  std::string type = json_fields::type_of(j, w);
  if (type == "Sequence") {
    const auto& list = json_fields::need_array(j, "decoders", w);
    for (size_t i = 0; i < list.size(); ++i) parse_decoder(list[i], (w / "decoders")[i], byte_levels);
  } else if (type == "ByteLevel") {
    ++byte_levels;
  } else {
    fail(w, "decoder type '" + type + "' is not supported" + supported);
  }
}

}  // namespace

Tokenizer Tokenizer::from_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError(fmt::format("{}: cannot open the tokenizer file (missing or not readable)", path));
  std::string text{std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
  if (f.bad()) throw InputError(fmt::format("{}: read error", path));
  return from_json(text, path);
}

Tokenizer Tokenizer::from_json(const std::string& json_text, const std::string& what) {
  Tokenizer t;
  t.json_ = json_text;
  const Where top{what, ""};
  Json j;
  try {
    j = Json::parse(json_text);
  } catch (const Json::parse_error& e) {
    fail(top, std::string("not valid JSON: ") + e.what());
  }
  if (!j.is_object()) fail(top, "expected a JSON object at the top level");
  if (j.contains("version") && j["version"] != "1.0")
    fail(top / "version", j["version"].dump() + " is not supported (supported: \"1.0\")");
  for (const char* key : {"truncation", "padding"})
    if (j.contains(key) && !j[key].is_null())
      fail(top / key, "is set; encoding with truncation or padding is not supported (supported: null)");

  parse_normalizer(j.value("normalizer", Json()), top / "normalizer", t.normalizer_);
  t.pre_tokenizer_ = PreTokenizer::from_json(j.value("pre_tokenizer", Json()), top / "pre_tokenizer");
  t.model_ = Bpe::from_json(json_fields::need(j, "model", top), top / "model");
  parse_post_processor(j.value("post_processor", Json()), top / "post_processor", t.prefix_ids_, t.suffix_ids_);
  int byte_levels = 0;
  parse_decoder(j.value("decoder", Json()), top / "decoder", byte_levels);
  if (byte_levels != 1)
    fail(top / "decoder", fmt::format("holds {} ByteLevel decoders; exactly one is supported", byte_levels));

  // Added tokens get their ids the way tokenizers' AddedVocabulary::add_tokens gives them (the
  // "id" in the file is only checked there, with a warning): the id of the same content in the
  // vocabulary if any, else the next free id after the model's.
  std::vector<AddedToken> added;
  std::map<int32_t, size_t> by_id;
  StringMap<int32_t> by_content;
  std::map<std::string, bool> special_content;
  if (j.contains("added_tokens") && !j["added_tokens"].is_null()) {
    const auto& list = json_fields::need_array(j, "added_tokens", top);
    for (size_t i = 0; i < list.size(); ++i) {
      const auto& e = list[i];
      Where w = (top / "added_tokens")[i];
      AddedToken a;
      a.content = json_fields::get_string(e, "content", w);
      a.special = json_fields::get_bool(e, "special", false, w);
      a.single_word = json_fields::get_bool(e, "single_word", false, w);
      a.lstrip = json_fields::get_bool(e, "lstrip", false, w);
      a.rstrip = json_fields::get_bool(e, "rstrip", false, w);
      a.normalized = json_fields::get_bool(e, "normalized", !a.special, w);
      if (a.content.empty()) continue;
      if (a.special) special_content[a.content] = true;
      bool duplicate = false;
      for (const auto& b : added)
        duplicate |= b.content == a.content && b.special == a.special && b.single_word == a.single_word &&
                     b.lstrip == a.lstrip && b.rstrip == a.rstrip && b.normalized == a.normalized;
      if (duplicate) continue;
      if (auto it = by_content.find(a.content); it != by_content.end()) {
        a.id = it->second;
      } else if (auto id = t.model_.token_to_id(a.content)) {
        a.id = *id;
      } else {
        int64_t model_size = int64_t(t.model_.entries()), next = model_size;
        if (!by_id.empty()) {
          int64_t max = by_id.rbegin()->first;
          next = (max >= model_size || model_size == 0) ? max + 1 : model_size;
        }
        if (next > INT32_MAX) fail(w, "no id left for this token");
        a.id = int32_t(next);
      }
      by_content[a.content] = a.id;
      if (auto it = by_id.find(a.id); it != by_id.end()) added[it->second] = a;
      else by_id[a.id] = added.size(), added.push_back(a);
    }
  }
  for (auto& a : added) a.special = special_content.count(a.content) > 0;
  t.added_.build(std::move(added), [&](const std::string& s) { return t.normalize(s); });

  // Decoding tables: the added token's content wins over the model's token for the same id.
  int64_t max_id = t.model_.max_id();
  for (const auto& a : t.added_.tokens()) max_id = std::max<int64_t>(max_id, a.id);
  t.vocab_size_ = max_id + 1;
  t.bytes_of_.assign(size_t(t.vocab_size_), std::string());
  t.special_.assign(size_t(t.vocab_size_), 0);
  t.known_.assign(size_t(t.vocab_size_), 0);
  for (int32_t id = 0; id < int32_t(t.vocab_size_); ++id) {
    if (const std::string* tok = t.model_.id_to_token(id)) {
      t.bytes_of_[size_t(id)] = byte_level::decode_token(*tok);
      t.special_[size_t(id)] = special_content.count(*tok) > 0;
      t.known_[size_t(id)] = 1;
    }
  }
  // tokenizers decodes a "normalized" added token as its normalized content (and tells whether
  // it is special by that string).
  for (const auto& a : t.added_.tokens()) {
    std::string content = t.id_to_token(a.id).value();
    t.bytes_of_[size_t(a.id)] = byte_level::decode_token(content);
    t.special_[size_t(a.id)] = special_content.count(content) > 0;
    t.known_[size_t(a.id)] = 1;
  }
  for (int32_t id : t.prefix_ids_)
    if (id >= t.vocab_size_) fail(top / "post_processor", fmt::format("template id {} is outside the vocabulary", id));
  for (int32_t id : t.suffix_ids_)
    if (id >= t.vocab_size_) fail(top / "post_processor", fmt::format("template id {} is outside the vocabulary", id));
  return t;
}

std::string Tokenizer::normalize(std::string_view s) const {
  if (normalizer_.empty()) return std::string(s);
  std::string out(s);
  for (auto f : normalizer_) out = unicode::normalize(out, f);
  return out;
}

// Steps 1-3 of the pipeline; calls emit(piece) for each added token and pre-token in order.
template <class Emit>
static void run_pieces(std::string_view text, const AddedVocabulary& added, const PreTokenizer& pre,
                       const std::function<std::string(std::string_view)>& norm, const Emit& emit) {
  std::vector<Piece> raw, normed;
  std::vector<std::string> pretokens;
  if (added.has(false)) added.split(text, false, raw);
  else if (!text.empty()) raw.push_back({std::string(text), -1});
  for (auto& p : raw) {
    if (p.id >= 0) {
      emit(p);
      continue;
    }
    normed.clear();
    std::string n = norm(p.text);
    if (added.has(true)) added.split(n, true, normed);
    else if (!n.empty()) normed.push_back({std::move(n), -1});
    for (auto& q : normed) {
      if (q.id >= 0) {
        emit(q);
        continue;
      }
      pretokens.clear();
      pre.split(q.text, pretokens);
      for (auto& s : pretokens) emit(Piece{std::move(s), -1});
    }
  }
}

static void check_utf8(std::string_view text) {
  size_t bad = unicode::first_invalid_utf8(text);
  if (bad != text.size())
    throw InputError(fmt::format("text to tokenize is not valid UTF-8: ill-formed byte 0x{:02X} at offset {} of {}",
                                 static_cast<unsigned char>(text[bad]), bad, text.size()));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  check_utf8(text);
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 8);
  if (add_special_tokens) ids = prefix_ids_;
  auto norm = [this](std::string_view s) { return normalize(s); };
  run_pieces(text, added_, pre_tokenizer_, norm, [&](const Piece& p) {
    if (p.id >= 0) ids.push_back(p.id);
    else model_.encode_word(p.text, ids);
  });
  if (add_special_tokens) ids.insert(ids.end(), suffix_ids_.begin(), suffix_ids_.end());
  return ids;
}

std::vector<std::string> Tokenizer::pre_tokenize(std::string_view text) const {
  check_utf8(text);
  std::vector<std::string> out;
  auto norm = [this](std::string_view s) { return normalize(s); };
  run_pieces(text, added_, pre_tokenizer_, norm, [&](const Piece& p) { out.push_back(p.text); });
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  std::string out;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size_ || !known_[size_t(id)]) continue;
    if (skip_special_tokens && special_[size_t(id)]) continue;
    out += bytes_of_[size_t(id)];
  }
  return out;
}

std::optional<int32_t> Tokenizer::token_to_id(const std::string& token) const {
  for (const auto& a : added_.tokens())
    if (a.content == token) return a.id;
  return model_.token_to_id(token);
}

std::optional<std::string> Tokenizer::id_to_token(int32_t id) const {
  for (const auto& a : added_.tokens())
    if (a.id == id) return a.normalized ? normalize(a.content) : a.content;
  if (const std::string* t = model_.id_to_token(id)) return *t;
  return std::nullopt;
}

}  // namespace strata
