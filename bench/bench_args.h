#pragma once
// Command-line helpers shared by the bench executables.
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace strata::bench {

// "1024,4096" -> {1024, 4096}; anything else exits with status 2 naming the bad list.
inline std::vector<long> parse_list(const char* s) {
  std::vector<long> v;
  for (const char* p = s; *p;) {
    char* end = nullptr;
    const long x = std::strtol(p, &end, 10);
    if (end == p || (*end != ',' && *end != '\0')) {
      std::fprintf(stderr, "expected a comma-separated list of integers, got '%s'\n", s);
      std::exit(2);
    }
    v.push_back(x);
    p = *end == ',' ? end + 1 : end;
  }
  return v;
}

}  // namespace strata::bench
