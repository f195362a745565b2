#include "core/error.h"

namespace strata {

void fail_at(const char* file, int line, const std::string& msg) {
  throw Error(fmt::format("{} ({}:{})", msg, file, line));
}

}  // namespace strata
