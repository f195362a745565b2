#include "infer/jinja/pystr.h"

#include <unicode/locid.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include "infer/jinja/builtins.h"
#include "infer/unicode.h"

namespace strata::jinja {

std::string icu_case(const std::string& s, int how) {  // 0 lower, 1 upper
  icu::UnicodeString u = icu::UnicodeString::fromUTF8(s);
  if (how == 0) u.toLower(icu::Locale::getRoot());
  else u.toUpper(icu::Locale::getRoot());
  std::string out;
  u.toUTF8String(out);
  return out;
}

// str.capitalize(): the first character in title case, the rest in lower case.
std::string capitalize(const std::string& s) {
  if (s.empty()) return s;
  size_t k = 0;
  char32_t c = unicode::next_code_point(s, k);
  std::string out;
  unicode::append_utf8(out, (char32_t)u_totitle((UChar32)c));
  return out + icu_case(s.substr(k), 0);
}

// Jinja's title filter: each run after one of "-", whitespace, "(", "{", "[", "<" capitalized.
std::string jinja_title(const std::string& s) {
  std::string out, word;
  auto flush = [&]() {
    if (!word.empty()) {
      size_t k = unicode::utf8_len((unsigned char)word[0]);
      out += icu_case(word.substr(0, k), 1) + icu_case(word.substr(k), 0);
    }
    word.clear();
  };
  for (const std::string& cp : code_points(s)) {
    size_t k = 0;
    char32_t c = unicode::next_code_point(cp, k);
    if (c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || python_isspace(c)) {
      flush();
      out += cp;
    } else {
      word += cp;
    }
  }
  flush();
  return out;
}

// str.title(): a cased letter after an uncased character starts a word.
std::string python_title(const std::string& s) {
  std::string out;
  bool prev_cased = false;
  for (const std::string& cp : code_points(s)) {
    size_t k = 0;
    char32_t c = unicode::next_code_point(cp, k);
    bool cased = u_hasBinaryProperty((UChar32)c, UCHAR_CASED);
    if (cased) {
      unicode::append_utf8(out, (char32_t)(prev_cased ? u_tolower((UChar32)c) : u_totitle((UChar32)c)));
    } else {
      out += cp;
    }
    prev_cased = cased;
  }
  return out;
}


std::vector<std::string> split(const std::string& s, const Value& sep, int64_t maxsplit) {
  std::vector<std::string> out;
  if (sep.is_none() || sep.is_undefined()) {  // runs of whitespace, no empty strings
    size_t i = 0;
    auto ws_at = [&](size_t k, size_t* n) {
      size_t j = k;
      char32_t c = unicode::next_code_point(s, j);
      *n = j - k;
      return python_isspace(c);
    };
    size_t n;
    while (i < s.size()) {
      while (i < s.size() && ws_at(i, &n)) i += n;
      if (i >= s.size()) break;
      if (maxsplit >= 0 && (int64_t)out.size() == maxsplit) {
        std::string rest = s.substr(i);
        out.push_back(python_strip(rest, Value::none(), false, true));
        break;
      }
      size_t b = i;
      while (i < s.size() && !ws_at(i, &n)) i += n;
      out.push_back(s.substr(b, i - b));
    }
    return out;
  }
  std::string d = need_str(sep, "split");
  if (d.empty()) throw RenderError{"empty separator"};
  size_t b = 0;
  for (;;) {
    size_t e = s.find(d, b);
    if (e == std::string::npos || (maxsplit >= 0 && (int64_t)out.size() == maxsplit)) break;
    out.push_back(s.substr(b, e - b));
    b = e + d.size();
  }
  out.push_back(s.substr(b));
  return out;
}

std::string replace(const std::string& s, const std::string& old, const std::string& with, int64_t count) {
  std::string out;
  size_t b = 0;
  int64_t n = 0;
  if (old.empty()) {  // Python inserts `with` around every character
    auto cps = code_points(s);
    for (size_t k = 0; k < cps.size(); ++k) {
      if (count < 0 || n < count) {
        out += with;
        ++n;
      }
      out += cps[k];
    }
    if (count < 0 || n < count) out += with;
    return out;
  }
  for (;;) {
    size_t e = s.find(old, b);
    if (e == std::string::npos || (count >= 0 && n == count)) break;
    out += s.substr(b, e - b) + with;
    b = e + old.size();
    ++n;
  }
  return out + s.substr(b);
}

bool starts_or_ends(const std::string& s, const Value& affix, bool start) {
  if (affix.is_list()) {
    for (const Value& a : *affix.list)
      if (starts_or_ends(s, a, start)) return true;
    return false;
  }
  std::string a = need_str(affix, start ? "startswith" : "endswith");
  if (a.size() > s.size()) return false;
  return start ? s.compare(0, a.size(), a) == 0 : s.compare(s.size() - a.size(), a.size(), a) == 0;
}

}  // namespace strata::jinja
