#pragma once
// Python's str methods over UTF-8 text, as chat templates call them: case mapping (ICU's full
// mappings, as Python's), capitalize / title, split, replace, startswith / endswith. Strip and
// code points are in value.h.
#include <string>
#include <vector>

#include "infer/jinja/value.h"

namespace strata::jinja {

std::string icu_case(const std::string& s, int how);  // 0: str.lower(), 1: str.upper()
std::string capitalize(const std::string& s);          // str.capitalize()
std::string jinja_title(const std::string& s);         // Jinja's title filter
std::string python_title(const std::string& s);        // str.title()
std::vector<std::string> split(const std::string& s, const Value& sep, int64_t maxsplit);  // str.split
std::string replace(const std::string& s, const std::string& old, const std::string& with, int64_t count);
bool starts_or_ends(const std::string& s, const Value& affix, bool start);  // affix: str or tuple of str

}  // namespace strata::jinja
