#pragma once
// Jinja's filters and tests, the Python str/dict methods, and the globals transformers gives chat
// templates (range, namespace, dict, raise_exception, strftime_now), as far as chat templates use
// them. The parser asks has_filter / has_test / has_method so an unknown one is refused at parse time.
// Filters and tests are in filters.cpp; methods, globals and attribute access in builtins.cpp.
#include <string>
#include <vector>

#include "infer/jinja/value.h"

namespace strata::jinja {

bool has_filter(const std::string& name);
bool has_test(const std::string& name);
bool has_method(const std::string& name);

Value apply_filter(const std::string& name, const Value& in, std::vector<Value>& args, Kwargs& kwargs);
bool apply_test(const std::string& name, const Value& in, std::vector<Value>& args);
Value call_method(const Value& self, const std::string& name, std::vector<Value>& args, Kwargs& kwargs);
Dict globals();

// Helpers shared by the builtins: argument `index` (positional) or `name` (keyword), or `def`; the
// argument as a string / integer (RenderError naming `what` otherwise); len(); an attribute path
// "a.b" as selectattr and map(attribute=) read it.
Value arg(std::vector<Value>& args, Kwargs& kwargs, size_t index, const char* name, Value def = Value::none());
std::string need_str(const Value& v, const char* what);
int64_t need_int(const Value& v, const char* what);
size_t length(const Value& v);
Value attr_path(const Value& item, const std::string& path);

// Jinja's getattr (obj.name) and getitem (obj[key]): a missing key or attribute is Undefined.
Value get_attr(const Value& obj, const std::string& name);
Value get_item(const Value& obj, const Value& key);
Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step);

}  // namespace strata::jinja
