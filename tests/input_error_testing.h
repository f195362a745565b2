#pragma once
// For the tests of refused input (configs, data keys): the message an InputError carries, and a
// check that it names everything a user needs (key, file, line, valid choices).
#include <gtest/gtest.h>

#include <cstdio>
#include <exception>
#include <functional>
#include <initializer_list>
#include <string>

#include "core/error.h"

namespace strata::testing {

// The message of the InputError `f` throws (a failure if it throws nothing or something else);
// printed, so a test log shows what users would read.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    std::printf("  error: %s\n", e.what());
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected strata::InputError, got another exception: " << e.what();
    return "";
  }
  ADD_FAILURE() << "expected an InputError, nothing was thrown";
  return "";
}

inline void expect_has(const std::string& msg, std::initializer_list<std::string> needles) {
  for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "missing '" << n << "' in: " << msg;
}

}  // namespace strata::testing
