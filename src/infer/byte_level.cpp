#include "infer/byte_level.h"

#include <array>
#include <unordered_map>

#include "infer/unicode.h"

namespace strata::byte_level {

namespace {
struct Table {
  std::array<std::string, 256> chars;
  std::unordered_map<char32_t, unsigned char> bytes;
  Table() {
    auto printable = [](int b) {
      return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    };
    int next = 0;
    for (int b = 0; b < 256; ++b) {
      char32_t c = printable(b) ? char32_t(b) : char32_t(256 + next++);
      unicode::append_utf8(chars[size_t(b)], c);
      bytes[c] = static_cast<unsigned char>(b);
    }
  }
};
const Table& table() {
  static const Table t;
  return t;
}
}  // namespace

const std::string& char_of(unsigned char b) { return table().chars[b]; }

void encode(std::string_view s, std::string& out) {
  const auto& chars = table().chars;
  for (char c : s) out += chars[static_cast<unsigned char>(c)];
}

std::string decode_token(std::string_view token) {
  const auto& bytes = table().bytes;
  std::string out;
  out.reserve(token.size());
  size_t i = 0;
  while (i < token.size()) {
    auto it = bytes.find(unicode::next_code_point(token, i));
    if (it == bytes.end()) return std::string(token);
    out += char(it->second);
  }
  return out;
}

}  // namespace strata::byte_level
