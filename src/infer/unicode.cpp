#include "infer/unicode.h"

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>

#include "core/error.h"

namespace strata::unicode {

// Length of the well-formed sequence at s[i], or 0 with *bad set to the length of its maximal
// ill-formed subpart (at least 1). The second-byte ranges are Table 3-7 of the Unicode standard.
static size_t sequence_at(std::string_view s, size_t i, size_t* bad) {
  auto at = [&](size_t k) { return i + k < s.size() ? int(static_cast<unsigned char>(s[i + k])) : -1; };
  int b0 = at(0);
  if (b0 < 0x80) return 1;
  int n = 0, lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) n = 2;
  else if (b0 == 0xE0) n = 3, lo = 0xA0;
  else if (b0 >= 0xE1 && b0 <= 0xEC) n = 3;
  else if (b0 == 0xED) n = 3, hi = 0x9F;  // no surrogates
  else if (b0 >= 0xEE && b0 <= 0xEF) n = 3;
  else if (b0 == 0xF0) n = 4, lo = 0x90;  // no overlongs
  else if (b0 >= 0xF1 && b0 <= 0xF3) n = 4;
  else if (b0 == 0xF4) n = 4, hi = 0x8F;  // <= U+10FFFF
  if (n == 0) {
    *bad = 1;
    return 0;
  }
  int b1 = at(1);
  if (b1 < lo || b1 > hi) {
    *bad = 1;
    return 0;
  }
  for (int k = 2; k < n; ++k) {
    int b = at(size_t(k));
    if (b < 0x80 || b > 0xBF) {
      *bad = size_t(k);
      return 0;
    }
  }
  return size_t(n);
}

size_t first_invalid_utf8(std::string_view s) {
  size_t i = 0, bad = 0;
  while (i < s.size()) {
    // ASCII runs dominate text: skip them eight bytes at a time.
    while (i + 8 <= s.size()) {
      uint64_t w;
      __builtin_memcpy(&w, s.data() + i, 8);
      if (w & 0x8080808080808080ull) break;
      i += 8;
    }
    if (i >= s.size()) break;
    size_t n = sequence_at(s, i, &bad);
    if (n == 0) return i;
    i += n;
  }
  return s.size();
}

std::string utf8_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0, bad = 0;
  while (i < s.size()) {
    size_t n = sequence_at(s, i, &bad);
    if (n) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out += "\xEF\xBF\xBD";
      i += bad;
    }
  }
  return out;
}

char32_t next_code_point(std::string_view s, size_t& i) {
  auto b = [&](size_t k) { return char32_t(static_cast<unsigned char>(s[i + k])); };
  char32_t c;
  size_t n = utf8_len(static_cast<unsigned char>(s[i]));
  if (n == 1) c = b(0);
  else if (n == 2) c = ((b(0) & 0x1F) << 6) | (b(1) & 0x3F);
  else if (n == 3) c = ((b(0) & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
  else c = ((b(0) & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
  i += n;
  return c;
}

char32_t prev_code_point(std::string_view s, size_t& i) {
  size_t start = i - 1;
  while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
  size_t j = start;
  char32_t c = next_code_point(s, j);
  i = start;
  return c;
}

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += char(c);
  } else if (c < 0x800) {
    out += char(0xC0 | (c >> 6));
    out += char(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += char(0xE0 | (c >> 12));
    out += char(0x80 | ((c >> 6) & 0x3F));
    out += char(0x80 | (c & 0x3F));
  } else {
    out += char(0xF0 | (c >> 18));
    out += char(0x80 | ((c >> 12) & 0x3F));
    out += char(0x80 | ((c >> 6) & 0x3F));
    out += char(0x80 | (c & 0x3F));
  }
}

bool is_white_space(char32_t c) { return u_hasBinaryProperty(UChar32(c), UCHAR_WHITE_SPACE); }

bool is_word_char(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  UChar32 u = UChar32(c);
  if (u_hasBinaryProperty(u, UCHAR_ALPHABETIC) || u_hasBinaryProperty(u, UCHAR_JOIN_CONTROL)) return true;
  int32_t mask = U_GET_GC_MASK(u);
  return mask & (U_GC_M_MASK | U_GC_ND_MASK | U_GC_PC_MASK);
}

const char* name(NormalForm f) {
  switch (f) {
    case NormalForm::NFC: return "NFC";
    case NormalForm::NFD: return "NFD";
    case NormalForm::NFKC: return "NFKC";
    case NormalForm::NFKD: return "NFKD";
  }
  return "?";
}

static const icu::Normalizer2& instance(NormalForm f) {
  UErrorCode err = U_ZERO_ERROR;
  const icu::Normalizer2* n = nullptr;
  switch (f) {
    case NormalForm::NFC: n = icu::Normalizer2::getNFCInstance(err); break;
    case NormalForm::NFD: n = icu::Normalizer2::getNFDInstance(err); break;
    case NormalForm::NFKC: n = icu::Normalizer2::getNFKCInstance(err); break;
    case NormalForm::NFKD: n = icu::Normalizer2::getNFKDInstance(err); break;
  }
  STRATA_CHECK(U_SUCCESS(err) && n, "ICU has no {} normalizer: {}", name(f), u_errorName(err));
  return *n;
}

std::string normalize(std::string_view s, NormalForm f) {
  // Every form leaves ASCII as is; most text is ASCII, and ICU is then not needed at all.
  size_t i = 0;
  while (i < s.size() && static_cast<unsigned char>(s[i]) < 0x80) ++i;
  if (i == s.size()) return std::string(s);
  if (s.size() > size_t(INT32_MAX))
    throw InputError(fmt::format("{} normalization: a text of {} bytes is over ICU's 2 GiB limit", name(f), s.size()));
  const icu::Normalizer2& n = instance(f);
  std::string out;
  out.reserve(s.size() + s.size() / 8);
  icu::StringByteSink<std::string> sink(&out);
  UErrorCode err = U_ZERO_ERROR;
  n.normalizeUTF8(0, icu::StringPiece(s.data(), int32_t(s.size())), sink, nullptr, err);
  STRATA_CHECK(U_SUCCESS(err), "ICU {} normalization failed: {}", name(f), u_errorName(err));
  return out;
}

}  // namespace strata::unicode
