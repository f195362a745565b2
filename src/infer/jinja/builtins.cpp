#include "infer/jinja/builtins.h"

#include <unicode/locid.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <set>

#include "infer/unicode.h"

namespace strata::jinja {
namespace {

// Argument `index` (positional) or `name` (keyword) of a filter / method call, or `def`.
Value arg(std::vector<Value>& args, Kwargs& kwargs, size_t index, const char* name, Value def = Value::none()) {
  if (index < args.size()) return args[index];
  for (auto& [k, v] : kwargs)
    if (k == name) return v;
  return def;
}

std::string need_str(const Value& v, const char* what) {
  if (!v.is_string()) throw RenderError{std::string(what) + " expects a string, got " + type_name(v)};
  return v.s;
}

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

int64_t need_int(const Value& v, const char* what) {
  if (v.kind == Value::Kind::Int) return v.i;
  if (v.kind == Value::Kind::Bool) return v.b;
  throw RenderError{std::string(what) + " expects an integer, got " + type_name(v)};
}

size_t length(const Value& v) {
  switch (v.kind) {
    case Value::Kind::Undefined: return 0;
    case Value::Kind::String: return code_point_count(v.s);
    case Value::Kind::List: return v.list->size();
    case Value::Kind::Dict: return v.dict->size();
    default: throw RenderError{std::string("object of type '") + type_name(v) + "' has no len()"};
  }
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

// An attribute path "a.b" of item, as selectattr / map(attribute=) read it.
Value attr_path(const Value& item, const std::string& path) {
  Value v = item;
  size_t b = 0;
  for (;;) {
    size_t e = path.find('.', b);
    std::string part = path.substr(b, e == std::string::npos ? std::string::npos : e - b);
    bool digits = !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit);
    v = digits && v.is_list() ? get_item(v, Value::integer(std::stoll(part))) : get_attr(v, part);
    if (e == std::string::npos) return v;
    b = e + 1;
  }
}

Value select(const Value& in, std::vector<Value>& args, bool by_attr, bool keep) {
  std::vector<Value> rest(args.begin() + std::min<size_t>(args.size(), by_attr ? 1 : 0), args.end());
  std::string attr = by_attr && !args.empty() ? need_str(args[0], "selectattr") : "";
  if (by_attr && args.empty()) throw RenderError{"selectattr / rejectattr need an attribute name"};
  std::string test;
  std::vector<Value> test_args;
  if (!rest.empty()) {
    test = need_str(rest[0], "select");
    if (!has_test(test)) throw RenderError{"no test named '" + test + "'"};
    test_args.assign(rest.begin() + 1, rest.end());
  }
  List out;
  for (const Value& item : iterate(in)) {
    Value v = by_attr ? attr_path(item, attr) : item;
    bool ok = test.empty() ? truthy(v) : apply_test(test, v, test_args);
    if (ok == keep) out.push_back(item);
  }
  return Value::list_of(std::move(out));
}

std::string now_formatted(const std::string& fmt) {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[512];
  size_t n = std::strftime(buf, sizeof buf, fmt.c_str(), &tm);
  return std::string(buf, n);
}

const std::set<std::string>& filter_names() {
  static const std::set<std::string> names = {
      "abs",   "capitalize", "count", "d",      "default", "first",  "float",      "int",      "items",  "join",
      "last",  "length",     "list",  "lower",  "map",     "reject", "rejectattr", "replace",  "reverse", "safe",
      "select", "selectattr", "string", "sum",  "tojson",  "trim",   "unique",     "upper",    "dictsort", "title"};
  return names;
}
const std::set<std::string>& test_names() {
  static const std::set<std::string> names = {
      "defined", "undefined", "none", "boolean", "true", "false", "integer", "float", "number", "string",
      "mapping", "iterable", "sequence", "callable", "sameas", "equalto", "eq", "==", "ne", "!=", "lt", "<",
      "le", "<=", "gt", ">", "ge", ">=", "in", "odd", "even", "divisibleby", "lower", "upper"};
  return names;
}
const std::set<std::string>& method_names() {
  static const std::set<std::string> names = {"strip", "lstrip", "rstrip", "split", "startswith", "endswith", "upper",
                                              "lower", "replace", "capitalize", "title", "find", "join", "count", "items",
                                              "keys", "values", "get"};
  return names;
}

}  // namespace

bool has_filter(const std::string& name) { return filter_names().count(name) > 0; }
bool has_test(const std::string& name) { return test_names().count(name) > 0; }
bool has_method(const std::string& name) { return method_names().count(name) > 0; }

Value get_attr(const Value& obj, const std::string& name) {
  switch (obj.kind) {
    case Value::Kind::Undefined: throw RenderError{(obj.s.empty() ? std::string("a value") : obj.s) + " is undefined"};
    case Value::Kind::Dict:
      if (const Value* v = dict_find(*obj.dict, name)) return *v;
      return Value::undefined("'dict object' has no attribute '" + name + "'");
    case Value::Kind::Namespace:
      if (const Value* v = dict_find(obj.ns->attrs, name)) return *v;
      return Value::undefined("'Namespace object' has no attribute '" + name + "'");
    default: return Value::undefined(std::string("'") + type_name(obj) + " object' has no attribute '" + name + "'");
  }
}

Value get_item(const Value& obj, const Value& key) {
  switch (obj.kind) {
    case Value::Kind::Undefined: throw RenderError{(obj.s.empty() ? std::string("a value") : obj.s) + " is undefined"};
    case Value::Kind::Dict:
      if (key.is_string()) {
        if (const Value* v = dict_find(*obj.dict, key.s)) return *v;
        return Value::undefined("'dict object' has no attribute '" + key.s + "'");
      }
      return Value::undefined("'dict object' has no attribute " + repr(key));
    case Value::Kind::List:
    case Value::Kind::String: {
      if (key.is_string()) return get_attr(obj, key.s);
      if (key.kind != Value::Kind::Int && key.kind != Value::Kind::Bool)
        throw RenderError{std::string(type_name(obj)) + " indices must be integers or slices, not " + type_name(key)};
      int64_t k = need_int(key, "index");
      if (obj.is_list()) {
        int64_t n = (int64_t)obj.list->size();
        if (k < 0) k += n;
        if (k < 0 || k >= n) return Value::undefined(std::string(type_name(obj)) + " object has no element " + std::to_string(key.i));
        return (*obj.list)[(size_t)k];
      }
      auto cps = code_points(obj.s);
      int64_t n = (int64_t)cps.size();
      if (k < 0) k += n;
      if (k < 0 || k >= n) return Value::undefined("str object has no element " + std::to_string(key.i));
      return Value::string(cps[(size_t)k]);
    }
    case Value::Kind::Namespace:
      if (key.is_string()) return get_attr(obj, key.s);
      [[fallthrough]];
    default: throw RenderError{std::string("'") + type_name(obj) + "' object is not subscriptable"};
  }
}

Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step) {
  if (obj.is_undefined()) throw RenderError{(obj.s.empty() ? std::string("a value") : obj.s) + " is undefined"};
  std::vector<Value> items;
  std::vector<std::string> cps;
  int64_t n;
  if (obj.is_list()) n = (int64_t)obj.list->size();
  else if (obj.is_string()) n = (int64_t)(cps = code_points(obj.s)).size();
  else throw RenderError{std::string("'") + type_name(obj) + "' object is not subscriptable"};
  int64_t st = step.is_none() ? 1 : need_int(step, "slice step");
  if (st == 0) throw RenderError{"slice step cannot be zero"};
  auto norm = [&](const Value& v, int64_t def) {
    if (v.is_none()) return def;
    int64_t k = need_int(v, "slice index");
    if (k < 0) k += n;
    if (st > 0) return std::clamp<int64_t>(k, 0, n);
    return std::clamp<int64_t>(k, -1, n - 1);
  };
  int64_t b = norm(start, st > 0 ? 0 : n - 1), e = norm(stop, st > 0 ? n : -1);
  List out;
  std::string sout;
  for (int64_t k = b; st > 0 ? k < e : k > e; k += st) {
    if (obj.is_list()) out.push_back((*obj.list)[(size_t)k]);
    else sout += cps[(size_t)k];
  }
  return obj.is_list() ? Value::list_of(std::move(out), obj.tuple) : Value::string(std::move(sout));
}

Value apply_filter(const std::string& name, const Value& in, std::vector<Value>& args, Kwargs& kwargs) {
  if (name == "trim") return Value::string(python_strip(str(in), arg(args, kwargs, 0, "chars"), true, true));
  if (name == "length" || name == "count") return Value::integer((int64_t)length(in));
  if (name == "upper") return Value::string(icu_case(str(in), 1));
  if (name == "lower") return Value::string(icu_case(str(in), 0));
  if (name == "capitalize") return Value::string(capitalize(str(in)));
  if (name == "title") return Value::string(jinja_title(str(in)));
  if (name == "string" || name == "safe") return in.is_string() ? in : Value::string(str(in));
  if (name == "default" || name == "d") {
    bool boolean = truthy(arg(args, kwargs, 1, "boolean", Value::boolean(false)));
    if (in.is_undefined() || (boolean && !truthy(in))) return arg(args, kwargs, 0, "default_value", Value::string(""));
    return in;
  }
  if (name == "tojson") {
    if (truthy(arg(args, kwargs, 1, "ensure_ascii", Value::boolean(false))))
      throw RenderError{"tojson(ensure_ascii=true) is not supported"};
    Value indent = arg(args, kwargs, 0, "indent");
    Value seps = arg(args, kwargs, 2, "separators");
    bool sort = truthy(arg(args, kwargs, 3, "sort_keys", Value::boolean(false)));
    int ind = indent.is_none() ? -1 : (int)need_int(indent, "tojson indent");
    std::string isep = ind >= 0 ? "," : ", ", ksep = ": ";
    if (seps.is_list() && seps.list->size() == 2) {
      isep = need_str((*seps.list)[0], "tojson separators");
      ksep = need_str((*seps.list)[1], "tojson separators");
    }
    return Value::string(to_json(in, ind, sort, isep, ksep));
  }
  if (name == "join") {
    std::string d = str(arg(args, kwargs, 0, "d", Value::string("")));
    Value attr = arg(args, kwargs, 1, "attribute");
    std::string out;
    bool first = true;
    for (const Value& item : iterate(in)) {
      out += (first ? "" : d) + str(attr.is_none() ? item : attr_path(item, str(attr)));
      first = false;
    }
    return Value::string(out);
  }
  if (name == "first" || name == "last") {
    auto items = iterate(in);
    if (items.empty()) return Value::undefined(std::string("No ") + name + " item, sequence was empty.");
    return name == "first" ? items.front() : items.back();
  }
  if (name == "replace") {
    Value count = arg(args, kwargs, 2, "count");
    return Value::string(replace(str(in), str(arg(args, kwargs, 0, "old")), str(arg(args, kwargs, 1, "new")),
                                 count.is_none() ? -1 : need_int(count, "replace count")));
  }
  if (name == "items") {
    if (in.is_undefined()) return Value::list_of({});
    if (!in.is_dict()) throw RenderError{"Can only get item pairs from a mapping."};
    List out;
    for (const auto& [k, v] : *in.dict) out.push_back(Value::list_of({Value::string(k), v}, true));
    return Value::list_of(std::move(out));
  }
  if (name == "dictsort") {
    if (!in.is_dict()) throw RenderError{"dictsort expects a mapping"};
    List out;
    for (const auto& [k, v] : *in.dict) out.push_back(Value::list_of({Value::string(k), v}, true));
    std::stable_sort(out.begin(), out.end(), [](const Value& a, const Value& b) {
      return icu_case((*a.list)[0].s, 0) < icu_case((*b.list)[0].s, 0);
    });
    return Value::list_of(std::move(out));
  }
  if (name == "list") return Value::list_of(iterate(in));
  if (name == "reverse") {
    if (in.is_string()) {
      auto cps = code_points(in.s);
      std::string out;
      for (auto it = cps.rbegin(); it != cps.rend(); ++it) out += *it;
      return Value::string(out);
    }
    auto items = iterate(in);
    std::reverse(items.begin(), items.end());
    return Value::list_of(std::move(items));
  }
  if (name == "unique") {
    List out;
    for (const Value& item : iterate(in)) {
      bool seen = false;
      for (const Value& o : out) seen = seen || (item.is_string() && o.is_string() ? icu_case(item.s, 0) == icu_case(o.s, 0) : equal(item, o));
      if (!seen) out.push_back(item);
    }
    return Value::list_of(std::move(out));
  }
  if (name == "select" || name == "reject") return select(in, args, false, name == "select");
  if (name == "selectattr" || name == "rejectattr") return select(in, args, true, name == "selectattr");
  if (name == "map") {
    Value attr = arg(args, kwargs, 99, "attribute");
    List out;
    if (!attr.is_none()) {
      Value def = arg(args, kwargs, 99, "default", Value::undefined());
      for (const Value& item : iterate(in)) {
        Value v = attr_path(item, str(attr));
        out.push_back(v.is_undefined() && !def.is_undefined() ? def : v);
      }
    } else {
      if (args.empty()) throw RenderError{"map needs a filter name or attribute="};
      std::string f = need_str(args[0], "map");
      if (!has_filter(f)) throw RenderError{"no filter named '" + f + "'"};
      std::vector<Value> rest(args.begin() + 1, args.end());
      for (const Value& item : iterate(in)) {
        std::vector<Value> a = rest;
        Kwargs kw = kwargs;
        out.push_back(apply_filter(f, item, a, kw));
      }
    }
    return Value::list_of(std::move(out));
  }
  if (name == "sum") {
    Value total = arg(args, kwargs, 1, "start", Value::integer(0));
    Value attr = arg(args, kwargs, 0, "attribute");
    for (const Value& item : iterate(in)) {
      Value v = attr.is_none() ? item : attr_path(item, str(attr));
      if (!v.is_number() || !total.is_number()) throw RenderError{"sum of non-numbers"};
      if (v.kind == Value::Kind::Float || total.kind == Value::Kind::Float)
        total = Value::real((total.kind == Value::Kind::Float ? total.f : (double)need_int(total, "sum")) +
                            (v.kind == Value::Kind::Float ? v.f : (double)need_int(v, "sum")));
      else
        total = Value::integer(need_int(total, "sum") + need_int(v, "sum"));
    }
    return total;
  }
  if (name == "abs") {
    if (in.kind == Value::Kind::Float) return Value::real(std::fabs(in.f));
    return Value::integer(std::llabs(need_int(in, "abs")));
  }
  if (name == "int") {
    Value def = arg(args, kwargs, 0, "default", Value::integer(0));
    if (in.kind == Value::Kind::Int || in.kind == Value::Kind::Bool) return Value::integer(need_int(in, "int"));
    if (in.kind == Value::Kind::Float) return Value::integer((int64_t)in.f);
    if (in.is_string()) {
      std::string s = python_strip(in.s, Value::none(), true, true);
      try {
        size_t used = 0;
        long long v = std::stoll(s, &used, 10);
        if (used == s.size()) return Value::integer(v);
        double d = std::stod(s, &used);
        if (used == s.size()) return Value::integer((int64_t)d);
      } catch (...) {
      }
    }
    return def;
  }
  if (name == "float") {
    Value def = arg(args, kwargs, 0, "default", Value::real(0.0));
    if (in.is_number()) return Value::real(in.kind == Value::Kind::Float ? in.f : (double)need_int(in, "float"));
    if (in.is_string()) {
      try {
        size_t used = 0;
        std::string s = python_strip(in.s, Value::none(), true, true);
        double d = std::stod(s, &used);
        if (used == s.size()) return Value::real(d);
      } catch (...) {
      }
    }
    return def;
  }
  throw RenderError{"no filter named '" + name + "'"};
}

bool apply_test(const std::string& name, const Value& in, std::vector<Value>& args) {
  Kwargs none;
  auto other = [&]() {
    if (args.empty()) throw RenderError{"test '" + name + "' needs an argument"};
    return args[0];
  };
  using K = Value::Kind;
  if (name == "defined") return !in.is_undefined();
  if (name == "undefined") return in.is_undefined();
  if (name == "none") return in.is_none();
  if (name == "boolean") return in.kind == K::Bool;
  if (name == "true") return in.kind == K::Bool && in.b;
  if (name == "false") return in.kind == K::Bool && !in.b;
  if (name == "integer") return in.kind == K::Int;
  if (name == "float") return in.kind == K::Float;
  if (name == "number") return in.is_number();
  if (name == "string") return in.is_string();
  if (name == "mapping") return in.is_dict();
  if (name == "iterable") return in.is_undefined() || in.is_string() || in.is_list() || in.is_dict();
  if (name == "sequence") return in.is_undefined() || in.is_string() || in.is_list() || in.is_dict();
  if (name == "callable") return in.kind == K::Callable;
  if (name == "sameas") {
    const Value o = other();
    if (in.kind != o.kind) return false;
    if (in.is_none() || in.is_undefined()) return true;
    if (in.kind == K::Bool) return in.b == o.b;
    if (in.kind == K::Int) return in.i == o.i && in.i >= -5 && in.i <= 256;  // CPython's cached small ints
    return (in.list && in.list == o.list) || (in.dict && in.dict == o.dict) || (in.ns && in.ns == o.ns) ||
           (in.fn && in.fn == o.fn);
  }
  if (name == "equalto" || name == "eq" || name == "==") return equal(in, other());
  if (name == "ne" || name == "!=") return !equal(in, other());
  if (name == "lt" || name == "<") return compare(in, other(), "<") < 0;
  if (name == "le" || name == "<=") return compare(in, other(), "<=") <= 0;
  if (name == "gt" || name == ">") return compare(in, other(), ">") > 0;
  if (name == "ge" || name == ">=") return compare(in, other(), ">=") >= 0;
  if (name == "in") return contains(other(), in);
  if (name == "odd") return need_int(in, "odd") % 2 != 0;
  if (name == "even") return need_int(in, "even") % 2 == 0;
  if (name == "divisibleby") {
    int64_t d = need_int(other(), "divisibleby");
    if (d == 0) throw RenderError{"integer division or modulo by zero"};
    return need_int(in, "divisibleby") % d == 0;
  }
  if (name == "lower" || name == "upper") {
    std::string s = str(in);
    bool cased = false;
    for (unsigned char c : s) cased = cased || std::isalpha(c) || c >= 0x80;
    return cased && icu_case(s, name == "lower" ? 0 : 1) == s;
  }
  throw RenderError{"no test named '" + name + "'"};
}

Value call_method(const Value& self, const std::string& name, std::vector<Value>& args, Kwargs& kwargs) {
  if (self.is_undefined()) throw RenderError{(self.s.empty() ? std::string("a value") : self.s) + " is undefined"};
  if (self.is_string()) {
    const std::string& s = self.s;
    if (name == "strip") return Value::string(python_strip(s, arg(args, kwargs, 0, "chars"), true, true));
    if (name == "lstrip") return Value::string(python_strip(s, arg(args, kwargs, 0, "chars"), true, false));
    if (name == "rstrip") return Value::string(python_strip(s, arg(args, kwargs, 0, "chars"), false, true));
    if (name == "upper") return Value::string(icu_case(s, 1));
    if (name == "lower") return Value::string(icu_case(s, 0));
    if (name == "capitalize") return Value::string(capitalize(s));
    if (name == "title") return Value::string(python_title(s));
    if (name == "startswith") return Value::boolean(starts_or_ends(s, arg(args, kwargs, 0, "prefix"), true));
    if (name == "endswith") return Value::boolean(starts_or_ends(s, arg(args, kwargs, 0, "suffix"), false));
    if (name == "split") {
      Value maxsplit = arg(args, kwargs, 1, "maxsplit", Value::integer(-1));
      List out;
      for (auto& part : split(s, arg(args, kwargs, 0, "sep"), need_int(maxsplit, "split maxsplit")))
        out.push_back(Value::string(std::move(part)));
      return Value::list_of(std::move(out));
    }
    if (name == "replace") {
      Value count = arg(args, kwargs, 2, "count", Value::integer(-1));
      return Value::string(replace(s, need_str(arg(args, kwargs, 0, "old"), "replace"),
                                   need_str(arg(args, kwargs, 1, "new"), "replace"), need_int(count, "replace count")));
    }
    if (name == "find") {
      size_t at = s.find(need_str(arg(args, kwargs, 0, "sub"), "find"));
      return Value::integer(at == std::string::npos ? -1 : (int64_t)code_point_count(s.substr(0, at)));
    }
    if (name == "count") {
      std::string sub = need_str(arg(args, kwargs, 0, "sub"), "count");
      if (sub.empty()) return Value::integer((int64_t)code_point_count(s) + 1);
      int64_t n = 0;
      for (size_t at = s.find(sub); at != std::string::npos; at = s.find(sub, at + sub.size())) ++n;
      return Value::integer(n);
    }
    if (name == "join") {
      std::string out;
      bool first = true;
      for (const Value& item : iterate(arg(args, kwargs, 0, "iterable"))) {
        out += (first ? "" : s) + need_str(item, "join");
        first = false;
      }
      return Value::string(out);
    }
  }
  if (self.is_dict()) {
    if (name == "items") {
      List out;
      for (const auto& [k, v] : *self.dict) out.push_back(Value::list_of({Value::string(k), v}, true));
      return Value::list_of(std::move(out));
    }
    if (name == "keys" || name == "values") {
      List out;
      for (const auto& [k, v] : *self.dict) out.push_back(name == "keys" ? Value::string(k) : v);
      return Value::list_of(std::move(out));
    }
    if (name == "get") {
      Value key = arg(args, kwargs, 0, "key");
      if (key.is_string())
        if (const Value* v = dict_find(*self.dict, key.s)) return *v;
      return arg(args, kwargs, 1, "default");
    }
  }
  throw RenderError{std::string("'") + type_name(self) + "' object has no method '" + name + "'"};
}

Dict globals() {
  Dict g;
  g.emplace_back("range", Value::callable("range", [](std::vector<Value>& a, Kwargs&) {
    if (a.empty() || a.size() > 3) throw RenderError{"range expects 1 to 3 arguments"};
    int64_t start = 0, stop, step = 1;
    if (a.size() == 1) stop = need_int(a[0], "range");
    else {
      start = need_int(a[0], "range");
      stop = need_int(a[1], "range");
      if (a.size() == 3) step = need_int(a[2], "range");
    }
    if (step == 0) throw RenderError{"range() arg 3 must not be zero"};
    List out;
    for (int64_t k = start; step > 0 ? k < stop : k > stop; k += step) {
      if (out.size() >= 100000) throw RenderError{"range too big, maximum size for range is 100000"};
      out.push_back(Value::integer(k));
    }
    return Value::list_of(std::move(out));
  }));
  g.emplace_back("namespace", Value::callable("namespace", [](std::vector<Value>& a, Kwargs& kw) {
    Dict attrs;
    for (const Value& v : a) {
      if (!v.is_dict()) throw RenderError{"namespace() takes a mapping as its positional argument"};
      for (const auto& kv : *v.dict) attrs.push_back(kv);
    }
    for (const auto& kv : kw) {
      if (!kv.first.empty() && kv.first[0] == '_')
        throw RenderError{"Chat templates cannot store underscore-prefixed attributes on a namespace"};
      bool replaced = false;
      for (auto& [k, v] : attrs)
        if (k == kv.first) v = kv.second, replaced = true;
      if (!replaced) attrs.push_back(kv);
    }
    return Value::namespace_of(std::move(attrs));
  }));
  g.emplace_back("dict", Value::callable("dict", [](std::vector<Value>& a, Kwargs& kw) {
    Dict d;
    if (!a.empty() && a[0].is_dict()) d = *a[0].dict;
    for (const auto& kv : kw) d.push_back(kv);
    return Value::dict_of(std::move(d));
  }));
  g.emplace_back("raise_exception", Value::callable("raise_exception", [](std::vector<Value>& a, Kwargs&) -> Value {
    throw RenderError{a.empty() ? std::string() : str(a[0]), true};
  }));
  g.emplace_back("strftime_now", Value::callable("strftime_now", [](std::vector<Value>& a, Kwargs&) {
    if (a.empty()) throw RenderError{"strftime_now expects a format"};
    return Value::string(now_formatted(need_str(a[0], "strftime_now")));
  }));
  return g;
}

}  // namespace strata::jinja
