#include "serve/text_stream.h"

#include <algorithm>

namespace strata {

size_t utf8_complete_prefix(const std::string& s) {
  // Look back at most 3 bytes for a lead byte whose sequence runs past the end.
  const size_t n = s.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    const unsigned char c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // a continuation byte: keep looking for its lead
    const size_t need = c >= 0xF0 && c < 0xF8 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    return need > back ? n - back : n;
  }
  return n;
}

TextStream::TextStream(Decode decode, std::vector<std::string> stop) : decode_(std::move(decode)), stop_(std::move(stop)) {}

std::string TextStream::push(int32_t id) {
  if (stopped_) return "";
  ids_.push_back(id);
  // Decoding a window that starts a few ids back keeps tokenizers that change a token's text by its
  // left neighbour (SentencePiece's leading space) right, at the cost of decoding twice.
  const std::vector<int32_t> before(ids_.begin() + long(prefix_), ids_.begin() + long(read_));
  const std::vector<int32_t> now(ids_.begin() + long(prefix_), ids_.end());
  const std::string prev = decode_(before), text = decode_(now);
  // Nothing new, or the text ends inside a character: wait for the next id.
  if (text.size() <= prev.size() || utf8_complete_prefix(text) != text.size())
    return "";
  prefix_ = read_;
  read_ = ids_.size();
  return release(text.substr(prev.size()));
}

std::string TextStream::release(std::string text) {
  held_ += text;
  for (const std::string& s : stop_) {
    const size_t at = held_.find(s);
    if (at != std::string::npos) {
      stopped_ = true;
      std::string out = held_.substr(0, at);
      held_.clear();
      return out;
    }
  }
  // Hold back the longest tail of held_ that is a proper prefix of some stop string.
  size_t keep = 0;
  for (const std::string& s : stop_)
    for (size_t k = std::min(s.size() - 1, held_.size()); k > keep; --k)
      if (held_.compare(held_.size() - k, k, s, 0, k) == 0) {
        keep = k;
        break;
      }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string TextStream::finish() {
  if (stopped_) return "";
  // Whatever is still undecoded (an unfinished character at the very end) goes out as it is.
  const std::vector<int32_t> before(ids_.begin() + long(prefix_), ids_.begin() + long(read_));
  const std::vector<int32_t> now(ids_.begin() + long(prefix_), ids_.end());
  const std::string prev = decode_(before), text = decode_(now);
  std::string out = held_;
  if (text.size() > prev.size()) out += text.substr(prev.size());
  held_.clear();
  prefix_ = read_ = ids_.size();
  return out;
}

}  // namespace strata
