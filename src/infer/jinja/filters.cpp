#include <algorithm>
#include <cmath>
#include <set>

#include "infer/jinja/builtins.h"
#include "infer/jinja/pystr.h"

namespace strata::jinja {
namespace {

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

}  // namespace

bool has_filter(const std::string& name) { return filter_names().count(name) > 0; }
bool has_test(const std::string& name) { return test_names().count(name) > 0; }

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

}  // namespace strata::jinja
