#pragma once
// Reading tokenizer.json: typed field access whose errors name the file, the key path and the
// reason, as InputError. `at` is the key path of the object being read ("pre_tokenizer.pretokenizers[1]").
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"

namespace strata::json_fields {

struct Where {
  std::string file;  // "tokenizer.json" or the path it was read from
  std::string at;    // key path, "" for the top level
  Where operator/(const std::string& key) const { return {file, at.empty() ? key : at + "." + key}; }
  Where operator[](size_t i) const { return {file, at + "[" + std::to_string(i) + "]"}; }
};

[[noreturn]] inline void fail(const Where& w, const std::string& msg) {
  throw InputError(w.at.empty() ? fmt::format("{}: {}", w.file, msg) : fmt::format("{}: {}: {}", w.file, w.at, msg));
}

// j[key] must exist (null counts as present).
inline const nlohmann::json& need(const nlohmann::json& j, const char* key, const Where& w) {
  if (!j.is_object()) fail(w, "expected an object");
  auto it = j.find(key);
  if (it == j.end()) fail(w / key, "missing");
  return *it;
}

inline bool get_bool(const nlohmann::json& j, const char* key, bool dflt, const Where& w) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return dflt;
  if (!it->is_boolean()) fail(w / key, "expected true or false, got " + it->dump());
  return it->get<bool>();
}

inline std::string get_string(const nlohmann::json& j, const char* key, const Where& w) {
  const auto& v = need(j, key, w);
  if (!v.is_string()) fail(w / key, "expected a string, got " + v.dump());
  return v.get<std::string>();
}

// The "type" tag of a component object.
inline std::string type_of(const nlohmann::json& j, const Where& w) { return get_string(j, "type", w); }

inline const nlohmann::json& need_array(const nlohmann::json& j, const char* key, const Where& w) {
  const auto& v = need(j, key, w);
  if (!v.is_array()) fail(w / key, "expected an array, got " + v.dump().substr(0, 80));
  return v;
}

}  // namespace strata::json_fields
