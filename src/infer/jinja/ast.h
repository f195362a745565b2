#pragma once
// The parsed template: expressions and statements, each with its source line for error messages.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "infer/jinja/value.h"

namespace strata::jinja {

struct Expr;
using ExprP = std::shared_ptr<const Expr>;

struct Expr {
  enum class Kind {
    Literal,  // value
    Name,     // name
    List,     // args (tuple: is_tuple)
    Dict,     // kwargs... keys are expressions: args = k0, v0, k1, v1, ...
    Attr,     // args[0].name
    Item,     // args[0][args[1]]
    Slice,    // args[0][args[1]:args[2]:args[3]] (null parts absent)
    Call,     // args[0](args[1..], kwargs)
    Filter,   // args[0] | name(args[1..], kwargs)
    Test,     // args[0] is [not] name(args[1..])
    Unary,    // name ("-", "+", "not") args[0]
    Binary,   // args[0] name args[1]: + - * / // % ** ~ == != < > <= >= in "not in" and or
    Cond,     // args[0] if args[1] else args[2] (args[2] may be null)
  };
  Kind kind;
  int line = 0;
  Value value;
  std::string name;
  bool is_tuple = false;
  bool negated = false;
  std::vector<ExprP> args;
  std::vector<std::pair<std::string, ExprP>> kwargs;
};

struct Node;
using NodeP = std::shared_ptr<const Node>;
using Body = std::vector<NodeP>;

struct Node {
  enum class Kind {
    Text,        // text
    Output,      // {{ expr }}
    If,          // branches: (cond, body); cond null for else
    For,         // for targets in expr [if filter]: body [else: else_body]
    Set,         // set targets = expr; or set targets[0].attr = expr (attr non-empty)
    SetBlock,    // {% set targets[0] %}body{% endset %}
    Macro,       // macro name(params) body
    Break,
    Continue,
    Generation,  // transformers' {% generation %}body{% endgeneration %}: renders its body
  };
  Kind kind;
  int line = 0;
  std::string text;
  std::string name;
  std::string attr;
  ExprP expr;
  ExprP filter;
  std::vector<std::string> targets;
  std::vector<std::pair<ExprP, Body>> branches;
  std::vector<std::pair<std::string, ExprP>> params;  // macro parameters with defaults (null: none)
  Body body, else_body;
};

}  // namespace strata::jinja
