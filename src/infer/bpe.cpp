#include "infer/bpe.h"

#include <algorithm>
#include <mutex>
#include <nlohmann/json.hpp>

#include "infer/json_fields.h"

#include "infer/unicode.h"

namespace strata {

using json_fields::fail;
using json_fields::Where;

// Like tokenizers: only short pre-tokens are cached, and a full cache stops taking new entries.
static constexpr size_t kCacheMaxWordBytes = 256;
static constexpr size_t kCacheCapacity = 100000;

Bpe Bpe::from_json(const nlohmann::json& m, const Where& w) {
  Bpe b;
  if (!m.is_object()) fail(w, "expected an object");
  if (m.contains("type")) {
    std::string type = json_fields::type_of(m, w);
    if (type != "BPE") fail(w, "model type '" + type + "' is not supported (supported: BPE)");
  } else if (!m.contains("merges")) {
    fail(w, "model has no \"type\" and no \"merges\"; only BPE models are supported");
  }
  if (m.contains("dropout") && !m["dropout"].is_null() &&
      !(m["dropout"].is_number() && m["dropout"].get<double>() == 0.0))
    fail(w / "dropout", "BPE dropout " + m["dropout"].dump() + " is not supported (supported: null)");
  if (json_fields::get_bool(m, "byte_fallback", false, w))
    fail(w / "byte_fallback", "byte_fallback true is not supported (supported: false)");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    auto it = m.find(key);
    if (it != m.end() && !it->is_null() && !(it->is_string() && it->get<std::string>().empty()))
      fail(w / key, it->dump() + " is not supported (supported: null or \"\")");
  }
  b.ignore_merges_ = json_fields::get_bool(m, "ignore_merges", false, w);
  b.fuse_unk_ = json_fields::get_bool(m, "fuse_unk", false, w);

  const auto& vocab = json_fields::need(m, "vocab", w);
  if (!vocab.is_object()) fail(w / "vocab", "expected an object of token -> id");
  b.vocab_.reserve(vocab.size());
  int64_t max_id = -1;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const auto& v = it.value();
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX)
      fail(w / "vocab", "token '" + it.key() + "' has id " + v.dump() + "; expected an integer in [0, 2^31)");
    int32_t id = int32_t(v.get<int64_t>());
    b.vocab_[it.key()] = id;
    max_id = std::max<int64_t>(max_id, id);
  }
  b.vocab_r_.assign(size_t(max_id + 1), std::string());
  b.has_id_.assign(size_t(max_id + 1), false);
  for (const auto& [tok, id] : b.vocab_) b.vocab_r_[size_t(id)] = tok, b.has_id_[size_t(id)] = true;

  auto unk = m.find("unk_token");
  if (unk != m.end() && !unk->is_null()) {
    if (!unk->is_string()) fail(w / "unk_token", "expected a string or null");
    auto id = b.token_to_id(unk->get<std::string>());
    if (!id) fail(w / "unk_token", "'" + unk->get<std::string>() + "' is not in model.vocab");
    b.unk_id_ = *id;
  }

  // Merges: ["a b", ...] (the older form, '#version' lines skipped) or [["a", "b"], ...].
  const auto& merges = json_fields::need_array(m, "merges", w);
  b.merges_.reserve(merges.size());
  uint32_t rank = 0;
  for (size_t i = 0; i < merges.size(); ++i) {
    const auto& e = merges[i];
    std::string left, right;
    if (e.is_string()) {
      const std::string& line = e.get_ref<const std::string&>();
      if (line.rfind("#version", 0) == 0) continue;
      size_t sp = line.find(' ');
      if (sp == std::string::npos || line.find(' ', sp + 1) != std::string::npos)
        fail((w / "merges")[i], "'" + line + "' is not two tokens separated by one space");
      left = line.substr(0, sp), right = line.substr(sp + 1);
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      left = e[0].get<std::string>(), right = e[1].get<std::string>();
    } else {
      fail((w / "merges")[i], "expected \"a b\" or [\"a\", \"b\"], got " + e.dump());
    }
    auto a = b.token_to_id(left), c = b.token_to_id(right), n = b.token_to_id(left + right);
    if (!a || !c || !n)
      fail((w / "merges")[i], "'" + (!a ? left : !c ? right : left + right) + "' is not in model.vocab");
    // A pair listed twice keeps its last rank (tokenizers collects the list into a map).
    b.merges_.insert_or_assign(pair_key(*a, *c), Merge{rank, *n});
    ++rank;
  }
  return b;
}

std::optional<int32_t> Bpe::token_to_id(std::string_view token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* Bpe::id_to_token(int32_t id) const {
  if (id < 0 || size_t(id) >= vocab_r_.size() || !has_id_[size_t(id)]) return nullptr;
  return &vocab_r_[size_t(id)];
}

// tokenizers' Word::merge_all: a heap of candidate merges keyed (rank, position); entries made
// stale by an earlier merge are recognised and skipped when popped.
void Bpe::merge_word(std::string_view word, std::vector<int32_t>& out) const {
  struct Symbol {
    int32_t id;
    int32_t prev, next;
    bool gone;
  };
  std::vector<Symbol> sym;
  sym.reserve(word.size());
  auto add = [&](int32_t id) {
    int32_t i = int32_t(sym.size());
    sym.push_back({id, i - 1, -1, false});
    if (i > 0) sym[size_t(i - 1)].next = i;
  };
  int32_t pending_unk = -1;  // an unk not yet added (fuse_unk grows it instead of adding another)
  for (size_t i = 0; i < word.size();) {
    size_t n = unicode::utf8_len(static_cast<unsigned char>(word[i]));
    auto id = token_to_id(word.substr(i, n));
    i += n;
    if (id) {
      if (pending_unk >= 0) add(pending_unk), pending_unk = -1;
      add(*id);
    } else if (unk_id_) {
      if (pending_unk >= 0 && !fuse_unk_) add(pending_unk);
      pending_unk = *unk_id_;
    }
    // No unk_token: the character is dropped, as tokenizers does.
  }
  if (pending_unk >= 0) add(pending_unk);

  struct Cand {
    uint32_t rank;
    int32_t pos, new_id;
  };
  auto worse = [](const Cand& x, const Cand& y) { return x.rank != y.rank ? x.rank > y.rank : x.pos > y.pos; };
  std::vector<Cand> heap;
  auto push = [&](int32_t pos) {
    auto it = merges_.find(pair_key(sym[size_t(pos)].id, sym[size_t(sym[size_t(pos)].next)].id));
    if (it == merges_.end()) return;
    heap.push_back({it->second.rank, pos, it->second.new_id});
    std::push_heap(heap.begin(), heap.end(), worse);
  };
  for (int32_t i = 0; i + 1 < int32_t(sym.size()); ++i) push(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), worse);
    Cand top = heap.back();
    heap.pop_back();
    Symbol& s = sym[size_t(top.pos)];
    if (s.gone || s.next < 0) continue;
    Symbol& right = sym[size_t(s.next)];
    auto it = merges_.find(pair_key(s.id, right.id));
    if (it == merges_.end() || it->second.new_id != top.new_id) continue;  // stale
    s.id = top.new_id;
    right.gone = true;
    s.next = right.next;
    if (s.next >= 0) sym[size_t(s.next)].prev = top.pos;
    if (s.prev >= 0) push(s.prev);
    if (s.next >= 0) push(top.pos);
  }
  for (const auto& s : sym)
    if (!s.gone) out.push_back(s.id);
}

void Bpe::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (auto id = token_to_id(word)) {
      out.push_back(*id);
      return;
    }
  }
  bool cacheable = word.size() <= kCacheMaxWordBytes;
  if (cacheable) {
    std::shared_lock lock(cache_.mu);
    auto it = cache_.map.find(word);
    if (it != cache_.map.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  size_t first = out.size();
  merge_word(word, out);
  if (cacheable) {
    std::unique_lock lock(cache_.mu);
    if (cache_.map.size() < kCacheCapacity)
      cache_.map.try_emplace(std::string(word), out.begin() + long(first), out.end());
  }
}

}  // namespace strata
