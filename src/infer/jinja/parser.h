#pragma once
// Jinja's grammar, the part chat templates use: {{ }}, if/elif/else, for (with loop filters and
// else), set (names, tuples, namespace attributes, blocks), macro, break/continue, transformers'
// generation block; expressions with Jinja's precedence, filters, tests, calls, subscripts and
// slices. Anything else (include, extends, call blocks, unknown filters, tests or methods) is a
// SyntaxError naming the construct and its line, so no template renders differently from Jinja.
#include <string>

#include "infer/jinja/ast.h"
#include "infer/jinja/lexer.h"

namespace strata::jinja {

Body parse(const std::string& source);  // SyntaxError

}  // namespace strata::jinja
