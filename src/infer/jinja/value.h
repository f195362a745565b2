#pragma once
// The values a chat template computes with, as Python objects behave inside Jinja: None, bool,
// int, float, str (UTF-8, indexed by code point), list/tuple, dict (insertion-ordered, string keys),
// Jinja's namespace, callables (globals, macros, bound methods) and Jinja's default Undefined, which
// prints as "" and is false but fails on arithmetic and attribute access.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace strata::jinja {

struct Value;
using List = std::vector<Value>;
using Dict = std::vector<std::pair<std::string, Value>>;  // insertion order, as Python's dict
using Kwargs = std::vector<std::pair<std::string, Value>>;
using Builtin = std::function<Value(std::vector<Value>& args, Kwargs& kwargs)>;

struct Callable {
  std::string name;  // for error messages
  Builtin fn;
};

struct Namespace {
  Dict attrs;  // shared by reference: `{% set ns.x = ... %}` inside a loop is seen after it
};

struct Value {
  enum class Kind { Undefined, None, Bool, Int, Float, String, List, Dict, Namespace, Callable };
  Kind kind = Kind::Undefined;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;  // String; for Undefined: what was undefined, for the error message
  bool tuple = false;  // a List written (a, b) or made by items(): repr uses parentheses
  std::shared_ptr<const List> list;
  std::shared_ptr<const Dict> dict;
  std::shared_ptr<Namespace> ns;
  std::shared_ptr<const Callable> fn;

  static Value undefined(std::string what = "") { Value v; v.s = std::move(what); return v; }
  static Value none() { Value v; v.kind = Kind::None; return v; }
  static Value boolean(bool x) { Value v; v.kind = Kind::Bool; v.b = x; return v; }
  static Value integer(int64_t x) { Value v; v.kind = Kind::Int; v.i = x; return v; }
  static Value real(double x) { Value v; v.kind = Kind::Float; v.f = x; return v; }
  static Value string(std::string x) { Value v; v.kind = Kind::String; v.s = std::move(x); return v; }
  static Value list_of(List x, bool is_tuple = false) {
    Value v; v.kind = Kind::List; v.list = std::make_shared<const List>(std::move(x)); v.tuple = is_tuple; return v;
  }
  static Value dict_of(Dict x) { Value v; v.kind = Kind::Dict; v.dict = std::make_shared<const Dict>(std::move(x)); return v; }
  static Value namespace_of(Dict x) {
    Value v; v.kind = Kind::Namespace; v.ns = std::make_shared<Namespace>(); v.ns->attrs = std::move(x); return v;
  }
  static Value callable(std::string name, Builtin fn) {
    Value v; v.kind = Kind::Callable; v.fn = std::make_shared<const Callable>(Callable{std::move(name), std::move(fn)}); return v;
  }

  bool is_undefined() const { return kind == Kind::Undefined; }
  bool is_none() const { return kind == Kind::None; }
  bool is_string() const { return kind == Kind::String; }
  bool is_list() const { return kind == Kind::List; }
  bool is_dict() const { return kind == Kind::Dict; }
  bool is_number() const { return kind == Kind::Int || kind == Kind::Float || kind == Kind::Bool; }
};

// Raised while rendering (a type error, an undefined value used, raise_exception); the renderer
// adds the template line.
struct RenderError {
  std::string message;
  bool raised = false;  // by the template's raise_exception(), not by a failing operation
  int line = 0;         // set by the renderer
};

const char* type_name(const Value& v);   // Python's type name: "str", "NoneType", ...
std::string str(const Value& v);         // Python's str(); Undefined -> ""
std::string repr(const Value& v);        // Python's repr()
std::string python_float_repr(double x);
bool truthy(const Value& v);
bool equal(const Value& a, const Value& b);  // Python ==
int compare(const Value& a, const Value& b, const char* op);  // <0, 0, >0; RenderError if unorderable
const Value* dict_find(const Dict& d, const std::string& key);
std::vector<Value> iterate(const Value& v);  // for-loop items: list items, dict keys, string chars
bool contains(const Value& container, const Value& item);  // Python `item in container`
// json.dumps(v, ensure_ascii=False, indent=indent (<0: none), sort_keys) as transformers' tojson.
std::string to_json(const Value& v, int indent, bool sort_keys, const std::string& item_sep, const std::string& key_sep);

// Python string helpers over UTF-8 (code points).
std::vector<std::string> code_points(const std::string& s);
size_t code_point_count(const std::string& s);
bool python_isspace(char32_t c);
std::string python_strip(const std::string& s, const Value& chars, bool left, bool right);

}  // namespace strata::jinja
