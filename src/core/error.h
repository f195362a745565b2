#pragma once
// Errors carry their context (file, key, tensor name, shape) in the message; nothing returns codes
// that can be ignored.
#include <fmt/format.h>
#include <stdexcept>
#include <string>

namespace strata {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Thrown for user input (config, data, checkpoint): the CLI prints it without a stack of context.
struct InputError : Error {
  using Error::Error;
};

[[noreturn]] void fail_at(const char* file, int line, const std::string& msg);

}  // namespace strata

// STRATA_CHECK(cond, "fmt {}", args...) -> throws strata::Error naming the source line.
#define STRATA_CHECK(cond, ...)                                                   \
  do {                                                                            \
    if (!(cond)) ::strata::fail_at(__FILE__, __LINE__, ::fmt::format(__VA_ARGS__)); \
  } while (0)
