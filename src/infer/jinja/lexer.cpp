#include "infer/jinja/lexer.h"

#include <cctype>
#include <cstring>

#include "infer/unicode.h"

namespace strata::jinja {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// Jinja reads the source with universal newlines and drops one trailing newline.
std::string normalize_source(const std::string& in) {
  std::string s;
  s.reserve(in.size());
  for (size_t k = 0; k < in.size(); ++k) {
    if (in[k] == '\r') {
      s += '\n';
      if (k + 1 < in.size() && in[k + 1] == '\n') ++k;
    } else {
      s += in[k];
    }
  }
  if (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

// A string literal's value: Python's unicode-escape decoding, which Jinja applies.
std::string unescape(const std::string& raw, int line) {
  std::string out;
  for (size_t k = 0; k < raw.size(); ++k) {
    if (raw[k] != '\\' || k + 1 == raw.size()) {
      out += raw[k];
      continue;
    }
    char c = raw[++k];
    auto hex = [&](int n) {
      if (k + n >= raw.size()) throw SyntaxError{"truncated \\x/\\u escape in a string", line};
      uint32_t v = 0;
      for (int d = 1; d <= n; ++d) {
        char h = raw[k + d];
        if (!std::isxdigit((unsigned char)h)) throw SyntaxError{"bad \\x/\\u escape in a string", line};
        v = v * 16 + (std::isdigit((unsigned char)h) ? h - '0' : (std::tolower(h) - 'a' + 10));
      }
      k += n;
      unicode::append_utf8(out, (char32_t)v);
    };
    switch (c) {
      case '\n': break;
      case '\\': out += '\\'; break;
      case '\'': out += '\''; break;
      case '"': out += '"'; break;
      case 'a': out += '\a'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case 'v': out += '\v'; break;
      case 'x': hex(2); break;
      case 'u': hex(4); break;
      case 'U': hex(8); break;
      default:
        if (c >= '0' && c <= '7') {
          uint32_t v = c - '0';
          for (int d = 0; d < 2 && k + 1 < raw.size() && raw[k + 1] >= '0' && raw[k + 1] <= '7'; ++d) v = v * 8 + (raw[++k] - '0');
          unicode::append_utf8(out, (char32_t)v);
        } else {
          out += '\\';
          out += c;
        }
    }
  }
  return out;
}

struct Lexer {
  std::string s;
  size_t pos = 0;
  int line = 1;
  std::vector<Token> out;

  void advance_to(size_t p) {
    for (; pos < p; ++pos)
      if (s[pos] == '\n') ++line;
  }

  // Tokens of an expression up to its closing "}}" / "%}"; returns the closing sign ('-', '+' or 0).
  // Inside brackets the closing marker is not looked for, as Jinja's lexer balances them: "{}}}" is
  // an empty dict, then the end of the tag.
  char expression(const char* close) {
    std::string open;  // the brackets still open, innermost last
    for (;;) {
      while (pos < s.size() && is_space(s[pos])) advance_to(pos + 1);
      if (pos >= s.size())
        throw SyntaxError{std::string("unexpected end of template: missing '") + close + "'" +
                              (open.empty() ? "" : std::string(" ('") + open.back() + "' is still open)"),
                          line};
      for (char sign : {'-', '+', '\0'}) {
        if (!open.empty()) break;
        std::string end = sign ? std::string(1, sign) + close : std::string(close);
        if (sign == '+' && close[0] == '}') continue;
        if (s.compare(pos, end.size(), end) == 0) {
          advance_to(pos + end.size());
          return sign;
        }
      }
      char c = s[pos];
      int l = line;
      if (std::isalpha((unsigned char)c) || c == '_') {
        size_t b = pos;
        while (pos < s.size() && (std::isalnum((unsigned char)s[pos]) || s[pos] == '_')) ++pos;
        out.push_back({Token::Type::Name, s.substr(b, pos - b), l});
      } else if (std::isdigit((unsigned char)c)) {
        size_t b = pos;
        while (pos < s.size() && (std::isdigit((unsigned char)s[pos]) || s[pos] == '_')) ++pos;
        bool is_float = false;
        if (pos + 1 < s.size() && s[pos] == '.' && std::isdigit((unsigned char)s[pos + 1])) {
          is_float = true;
          ++pos;
          while (pos < s.size() && (std::isdigit((unsigned char)s[pos]) || s[pos] == '_')) ++pos;
        }
        if (pos < s.size() && (s[pos] == 'e' || s[pos] == 'E')) {
          size_t q = pos + 1;
          if (q < s.size() && (s[q] == '+' || s[q] == '-')) ++q;
          if (q < s.size() && std::isdigit((unsigned char)s[q])) {
            is_float = true;
            pos = q;
            while (pos < s.size() && std::isdigit((unsigned char)s[pos])) ++pos;
          }
        }
        std::string num;
        for (size_t k = b; k < pos; ++k)
          if (s[k] != '_') num += s[k];
        Token t{is_float ? Token::Type::Float : Token::Type::Int, num, l};
        if (is_float) t.f = std::stod(num);
        else t.i = std::stoll(num);
        out.push_back(t);
      } else if (c == '\'' || c == '"') {
        size_t q = pos + 1;
        while (q < s.size() && s[q] != c) q += s[q] == '\\' ? 2 : 1;
        if (q >= s.size()) throw SyntaxError{"unterminated string literal", l};
        std::string raw = s.substr(pos + 1, q - pos - 1);
        advance_to(q + 1);
        out.push_back({Token::Type::String, unescape(raw, l), l});
      } else {
        static const char* ops[] = {"==", "!=", "<=", ">=", "//", "**", "<", ">", "+", "-", "*", "/", "%", "~",
                                    "(",  ")",  "[",  "]",  "{",  "}",  ",", ".", ":", "|", "="};
        bool found = false;
        for (const char* op : ops) {
          size_t n = std::strlen(op);
          if (s.compare(pos, n, op) == 0) {
            if (n == 1 && std::strchr("([{", op[0])) open += op[0];
            if (n == 1 && std::strchr(")]}", op[0]) && !open.empty()) {
              char want = open.back() == '(' ? ')' : open.back() == '[' ? ']' : '}';
              if (op[0] != want) throw SyntaxError{std::string("unexpected '") + op[0] + "', expected '" + want + "'", l};
              open.pop_back();
            }
            out.push_back({Token::Type::Op, op, l});
            pos += n;
            found = true;
            break;
          }
        }
        if (!found) throw SyntaxError{std::string("unexpected character '") + c + "'", l};
      }
    }
  }

  void run() {
    bool line_starting = true;
    while (pos < s.size()) {
      size_t p = pos;
      for (;;) {
        p = s.find('{', p);
        if (p == std::string::npos || (p + 1 < s.size() && std::strchr("{%#", s[p + 1]))) break;
        ++p;
      }
      if (p == std::string::npos || p + 1 >= s.size()) {
        out.push_back({Token::Type::Data, s.substr(pos), line});
        advance_to(s.size());
        break;
      }
      char kind = s[p + 1];
      char sign = p + 2 < s.size() && (s[p + 2] == '-' || s[p + 2] == '+') ? s[p + 2] : 0;
      std::string text = s.substr(pos, p - pos);
      if (sign == '-') {
        size_t e = text.size();
        while (e > 0 && is_space(text[e - 1])) --e;
        text.resize(e);
      } else if (sign != '+' && kind != '{') {  // lstrip_blocks
        size_t l_pos = text.rfind('\n');
        l_pos = l_pos == std::string::npos ? 0 : l_pos + 1;
        if (l_pos > 0 || line_starting) {
          bool only_ws = l_pos < text.size();
          for (size_t k = l_pos; k < text.size(); ++k) only_ws = only_ws && is_space(text[k]);
          if (only_ws) text.resize(l_pos);
        }
      }
      int text_line = line;
      advance_to(p + 2 + (sign ? 1 : 0));
      if (!text.empty()) out.push_back({Token::Type::Data, text, text_line});
      if (kind == '#') {
        size_t e = s.find("#}", pos);
        if (e == std::string::npos) throw SyntaxError{"unterminated comment '{#'", line};
        char esign = e > pos && (s[e - 1] == '-' || s[e - 1] == '+') ? s[e - 1] : 0;
        advance_to(e + 2);
        close_tag(esign, true);
      } else if (kind == '{') {
        out.push_back({Token::Type::VarBegin, "{{", line});
        char esign = expression("}}");
        out.push_back({Token::Type::VarEnd, "}}", line});
        close_tag(esign, false);
      } else {
        out.push_back({Token::Type::BlockBegin, "{%", line});
        char esign = expression("%}");
        out.push_back({Token::Type::BlockEnd, "%}", line});
        close_tag(esign, true);
      }
      line_starting = pos > 0 && s[pos - 1] == '\n';
    }
    out.push_back({Token::Type::Eof, "", line});
  }

  // After a tag: '-' eats all following whitespace; trim_blocks eats one newline after a block or
  // comment tag unless it ends with '+'.
  void close_tag(char sign, bool block) {
    if (sign == '-') {
      size_t q = pos;
      while (q < s.size() && is_space(s[q])) ++q;
      advance_to(q);
    } else if (sign != '+' && block && pos < s.size() && s[pos] == '\n') {
      advance_to(pos + 1);
    }
  }
};

}  // namespace

std::vector<Token> lex(const std::string& source) {
  Lexer l;
  l.s = normalize_source(source);
  l.run();
  return l.out;
}

}  // namespace strata::jinja
