#include "infer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/error.h"
#include "infer/unicode.h"

namespace strata {

// Oniguruma (Ruby syntax, as the `onig` crate compiles tokenizer.json patterns) and PCRE2 with
// UTF + UCP agree on nearly everything the tokenizer patterns use. The differences that matter,
// each checked against `tokenizers` in tests/test_tokenizer.cpp:
//   \s   Oniguruma: \t-\r, U+0085 and \p{Z}; PCRE2's UCP \s lacks U+0085
//        and has U+180E.                                                  -> [\t-\r\x{85}\p{Z}]
//   \w   Oniguruma: Letter | Mark | Number | Connector_Punctuation;
//        PCRE2 10.42: Letter | Number | '_'.                             -> [\p{L}\p{M}\p{N}\p{Pc}]
//   \h   Oniguruma: a hex digit; PCRE2: horizontal space.                 -> [0-9A-Fa-f]
//   (?m) Ruby's m is "dot matches newline", PCRE2's s.                     -> (?s)
//   ^ $  Ruby anchors at every line; compiled with PCRE2_MULTILINE.
// Not rewritten: \S, \W, \H inside a character class, and Oniguruma's quirk of counting some
// No-category characters (like '²') as \w but not others (like '½').
std::string onig_to_pcre2(std::string_view p) {
  std::string out;
  out.reserve(p.size() + 16);
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      char e = p[++i];
      const char* rep = nullptr;
      if (!in_class) {
        switch (e) {
          case 's': rep = "[\\t-\\r\\x{85}\\p{Z}]"; break;
          case 'S': rep = "[^\\t-\\r\\x{85}\\p{Z}]"; break;
          case 'w': rep = "[\\p{L}\\p{M}\\p{N}\\p{Pc}]"; break;
          case 'W': rep = "[^\\p{L}\\p{M}\\p{N}\\p{Pc}]"; break;
          case 'h': rep = "[0-9A-Fa-f]"; break;
          case 'H': rep = "[^0-9A-Fa-f]"; break;
        }
      } else {
        switch (e) {
          case 's': rep = "\\t-\\r\\x{85}\\p{Z}"; break;
          case 'w': rep = "\\p{L}\\p{M}\\p{N}\\p{Pc}"; break;
          case 'h': rep = "0-9A-Fa-f"; break;
        }
      }
      if (rep) {
        out += rep;
      } else {
        out += c;
        out += e;
      }
      continue;
    }
    if (in_class) {
      if (c == '[' && i + 1 < p.size() && p[i + 1] == ':') {  // POSIX class [:alpha:] inside a class
        size_t end = p.find(":]", i + 2);
        if (end != std::string_view::npos) {
          out.append(p.substr(i, end + 2 - i));
          i = end + 1;
          continue;
        }
      }
      if (c == ']') in_class = false;
      out += c;
      continue;
    }
    if (c == '[') {
      in_class = true;
      out += c;
      // A ']' right after '[' or '[^' is a literal member, not the end of the class.
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];
      continue;
    }
    if (c == '(' && i + 2 < p.size() && p[i + 1] == '?') {
      // Inline options "(?imx-imx)" or "(?imx-imx:": Ruby's m is PCRE2's s.
      size_t j = i + 2;
      while (j < p.size() && (p[j] == 'i' || p[j] == 'm' || p[j] == 'x' || p[j] == '-')) ++j;
      if (j > i + 2 && j < p.size() && (p[j] == ':' || p[j] == ')')) {
        out += "(?";
        for (size_t k = i + 2; k < j; ++k) out += p[k] == 'm' ? 's' : p[k];
        i = j - 1;
        continue;
      }
    }
    out += c;
  }
  return out;
}

Regex Regex::compile(std::string_view pattern, bool literal, const std::string& what) {
  Regex r;
  r.pattern_ = std::string(pattern);
  r.what_ = what;
  std::string src = literal ? std::string(pattern) : onig_to_pcre2(pattern);
  uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP | PCRE2_MULTILINE);
  int err = 0;
  PCRE2_SIZE at = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(src.data()), src.size(), opts, &err, &at, nullptr);
  if (!code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    throw InputError(fmt::format("{}: regex '{}' does not compile: {} (at offset {} of '{}')", what, pattern,
                                 reinterpret_cast<const char*>(msg), at, src));
  }
  // JIT is an optimisation only: if this build of PCRE2 has none, the interpreter does the work.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  r.code_ = std::shared_ptr<pcre2_code>(code, pcre2_code_free);
  return r;
}

namespace {
// One match-data block per thread, reused across calls: only the overall match is read.
struct MatchData {
  pcre2_match_data* md = pcre2_match_data_create(1, nullptr);
  ~MatchData() { pcre2_match_data_free(md); }
};
}  // namespace

void Regex::find_all(std::string_view s, std::vector<std::pair<size_t, size_t>>& out) const {
  thread_local MatchData data;
  STRATA_CHECK(data.md, "out of memory for PCRE2 match data");
  auto subject = reinterpret_cast<PCRE2_SPTR>(s.data());
  size_t pos = 0, last_end = SIZE_MAX;
  while (pos <= s.size()) {
    // The text was validated once on entry to the tokenizer; skip PCRE2's per-call UTF check.
    int rc = pcre2_match(code_.get(), subject, s.size(), pos, PCRE2_NO_UTF_CHECK, data.md, nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)  // deep backtracking: the interpreter keeps its frames on the heap
      rc = pcre2_match(code_.get(), subject, s.size(), pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, data.md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      throw Error(fmt::format("{}: regex '{}' failed on a {}-byte text: {}", what_, pattern_, s.size(),
                              reinterpret_cast<const char*>(msg)));
    }
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data.md);
    size_t start = ov[0], end = ov[1];
    if (start == end && end == last_end) {
      // An empty match where the last one ended: step one character on (Oniguruma's find_iter).
      if (end >= s.size()) break;
      pos = end + unicode::utf8_len(static_cast<unsigned char>(s[end]));
      continue;
    }
    out.emplace_back(start, end);
    last_end = end;
    pos = end;
  }
}

}  // namespace strata
