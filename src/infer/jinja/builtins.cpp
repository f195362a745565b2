#include "infer/jinja/builtins.h"

#include <algorithm>
#include <ctime>
#include <set>

#include "infer/jinja/pystr.h"

namespace strata::jinja {
namespace {

std::string now_formatted(const std::string& fmt) {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[512];
  size_t n = std::strftime(buf, sizeof buf, fmt.c_str(), &tm);
  return std::string(buf, n);
}

const std::set<std::string>& method_names() {
  static const std::set<std::string> names = {"strip", "lstrip", "rstrip", "split", "startswith", "endswith", "upper",
                                              "lower", "replace", "capitalize", "title", "find", "join", "count", "items",
                                              "keys", "values", "get"};
  return names;
}

}  // namespace

Value arg(std::vector<Value>& args, Kwargs& kwargs, size_t index, const char* name, Value def) {
  if (index < args.size()) return args[index];
  for (auto& [k, v] : kwargs)
    if (k == name) return v;
  return def;
}

std::string need_str(const Value& v, const char* what) {
  if (!v.is_string()) throw RenderError{std::string(what) + " expects a string, got " + type_name(v)};
  return v.s;
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
