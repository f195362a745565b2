#pragma once
// UTF-8 and Unicode helpers for the tokenizer: validation, code point iteration, the lossy repair
// Rust's String::from_utf8_lossy does, character classes as the Rust `regex` crate defines them, and
// the four normalization forms (ICU). Strings are UTF-8 bytes in std::string / std::string_view.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace strata::unicode {

// Byte offset of the first ill-formed sequence (overlong, surrogate, > U+10FFFF, truncated), or
// s.size() when all of s is well-formed UTF-8 (the rule Rust's str and Python's codec enforce).
size_t first_invalid_utf8(std::string_view s);

// s with every ill-formed sequence replaced by U+FFFD, one per "maximal subpart" (Unicode 3.9,
// the policy of Rust's from_utf8_lossy and Python's errors="replace").
std::string utf8_lossy(std::string_view s);

// Length in bytes of the character starting with lead byte b (1 for a stray continuation byte).
inline size_t utf8_len(unsigned char b) { return b < 0x80 ? 1 : b < 0xE0 ? (b < 0xC0 ? 1 : 2) : b < 0xF0 ? 3 : 4; }

// Decodes the code point at s[i] (s well-formed) and advances i past it.
char32_t next_code_point(std::string_view s, size_t& i);
// Decodes the code point that ends at s[i] (exclusive; s well-formed) and moves i to its start.
char32_t prev_code_point(std::string_view s, size_t& i);
void append_utf8(std::string& out, char32_t c);

// \s of the Rust regex crate: the White_Space property.
bool is_white_space(char32_t c);
// \w of the Rust regex crate (UTS#18): Alphabetic, marks, decimal numbers, connector punctuation,
// Join_Control.
bool is_word_char(char32_t c);

enum class NormalForm { NFC, NFD, NFKC, NFKD };
const char* name(NormalForm f);
std::string normalize(std::string_view s, NormalForm f);  // s must be well-formed UTF-8

}  // namespace strata::unicode
