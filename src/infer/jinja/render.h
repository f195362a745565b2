#pragma once
// Renders a parsed template with the given top-level variables (and the globals of builtins.h), as
// Jinja's default Undefined and transformers' sandboxed environment would. RenderError (with the
// template line) for a failing operation or the template's raise_exception().
#include <string>

#include "infer/jinja/ast.h"

namespace strata::jinja {

std::string render(const Body& body, const Dict& variables);

}  // namespace strata::jinja
