#include "infer/jinja/render.h"

#include <cmath>
#include <unordered_map>

#include "infer/jinja/builtins.h"

namespace strata::jinja {
namespace {

struct Scope {
  std::unordered_map<std::string, Value> vars;
  Scope* parent = nullptr;
};

enum class Flow { Normal, Break, Continue };

double num(const Value& v) { return v.kind == Value::Kind::Float ? v.f : v.kind == Value::Kind::Int ? (double)v.i : (double)v.b; }
int64_t inum(const Value& v) { return v.kind == Value::Kind::Int ? v.i : (int64_t)v.b; }

[[noreturn]] void type_error(const std::string& op, const Value& a, const Value& b) {
  if (a.is_undefined() || b.is_undefined())
    throw RenderError{(a.is_undefined() ? a.s : b.s) + " is undefined"};
  throw RenderError{"unsupported operand type(s) for " + op + ": '" + type_name(a) + "' and '" + type_name(b) + "'"};
}

Value repeat(const Value& seq, int64_t n) {
  if (seq.is_string()) {
    std::string out;
    for (int64_t k = 0; k < n; ++k) out += seq.s;
    return Value::string(out);
  }
  List out;
  for (int64_t k = 0; k < n; ++k) out.insert(out.end(), seq.list->begin(), seq.list->end());
  return Value::list_of(std::move(out), seq.tuple);
}

Value arithmetic(const std::string& op, const Value& a, const Value& b) {
  bool nums = a.is_number() && b.is_number();
  bool floats = nums && (a.kind == Value::Kind::Float || b.kind == Value::Kind::Float);
  if (op == "+") {
    if (nums) return floats ? Value::real(num(a) + num(b)) : Value::integer(inum(a) + inum(b));
    if (a.is_string() && b.is_string()) return Value::string(a.s + b.s);
    if (a.is_list() && b.is_list() && a.tuple == b.tuple) {
      List out = *a.list;
      out.insert(out.end(), b.list->begin(), b.list->end());
      return Value::list_of(std::move(out), a.tuple);
    }
    if (a.is_string() && !b.is_undefined() && !a.is_undefined())
      throw RenderError{std::string("can only concatenate str (not \"") + type_name(b) + "\") to str"};
    type_error(op, a, b);
  }
  if (op == "*") {
    if (nums) return floats ? Value::real(num(a) * num(b)) : Value::integer(inum(a) * inum(b));
    if ((a.is_string() || a.is_list()) && (b.kind == Value::Kind::Int || b.kind == Value::Kind::Bool)) return repeat(a, inum(b));
    if ((b.is_string() || b.is_list()) && (a.kind == Value::Kind::Int || a.kind == Value::Kind::Bool)) return repeat(b, inum(a));
    type_error(op, a, b);
  }
  if (!nums) {
    if (op == "%" && a.is_string()) throw RenderError{"string formatting with '%' is not supported"};
    type_error(op, a, b);
  }
  if (op == "-") return floats ? Value::real(num(a) - num(b)) : Value::integer(inum(a) - inum(b));
  if (op == "/") {
    if (num(b) == 0) throw RenderError{"division by zero"};
    return Value::real(num(a) / num(b));
  }
  if (op == "//" || op == "%") {
    if (num(b) == 0) throw RenderError{"integer division or modulo by zero"};
    if (floats) {
      double q = std::floor(num(a) / num(b));
      return op == "//" ? Value::real(q) : Value::real(num(a) - q * num(b));
    }
    int64_t x = inum(a), y = inum(b), q = x / y;
    if ((x % y != 0) && ((x < 0) != (y < 0))) --q;
    return op == "//" ? Value::integer(q) : Value::integer(x - q * y);
  }
  if (op == "**") {
    if (!floats && inum(b) >= 0) {
      int64_t r = 1;
      for (int64_t k = 0; k < inum(b); ++k) r *= inum(a);
      return Value::integer(r);
    }
    return Value::real(std::pow(num(a), num(b)));
  }
  throw RenderError{"unknown operator " + op};
}

struct Renderer {
  Scope* root = nullptr;
  int macro_depth = 0;  // a template that recurses without end fails instead of exhausting the stack

  Value lookup(const std::string& name, Scope* s) {
    for (; s; s = s->parent) {
      auto it = s->vars.find(name);
      if (it != s->vars.end()) return it->second;
    }
    return Value::undefined("'" + name + "'");
  }

  Value eval(const Expr& e, Scope* s) {
    try {
      return eval_inner(e, s);
    } catch (RenderError& err) {
      if (!err.line) err.line = e.line;
      throw;
    }
  }

  void eval_args(const Expr& e, size_t from, Scope* s, std::vector<Value>& args, Kwargs& kwargs) {
    for (size_t k = from; k < e.args.size(); ++k) {
      const Expr& a = *e.args[k];
      if (a.kind == Expr::Kind::Unary && a.name == "*") {
        for (Value& v : iterate(eval(*a.args[0], s))) args.push_back(std::move(v));
      } else {
        args.push_back(eval(a, s));
      }
    }
    for (const auto& [key, x] : e.kwargs) kwargs.emplace_back(key, eval(*x, s));
  }

  Value eval_inner(const Expr& e, Scope* s) {
    using K = Expr::Kind;
    switch (e.kind) {
      case K::Literal: return e.value;
      case K::Name: return lookup(e.name, s);
      case K::List: {
        List items;
        for (const auto& x : e.args) items.push_back(eval(*x, s));
        return Value::list_of(std::move(items), e.is_tuple);
      }
      case K::Dict: {
        Dict d;
        for (size_t k = 0; k + 1 < e.args.size(); k += 2) {
          Value key = eval(*e.args[k], s);
          if (!key.is_string()) throw RenderError{"only string keys are supported in dict literals"};
          Value v = eval(*e.args[k + 1], s);
          bool replaced = false;
          for (auto& [dk, dv] : d)
            if (dk == key.s) dv = v, replaced = true;
          if (!replaced) d.emplace_back(key.s, std::move(v));
        }
        return Value::dict_of(std::move(d));
      }
      case K::Attr: return get_attr(eval(*e.args[0], s), e.name);
      case K::Item: return get_item(eval(*e.args[0], s), eval(*e.args[1], s));
      case K::Slice: {
        Value obj = eval(*e.args[0], s);
        auto part = [&](size_t k) { return e.args[k] ? eval(*e.args[k], s) : Value::none(); };
        return slice(obj, part(1), part(2), part(3));
      }
      case K::Call: {
        const Expr& callee = *e.args[0];
        std::vector<Value> args;
        Kwargs kwargs;
        if (callee.kind == K::Attr) {
          Value self = eval(*callee.args[0], s);
          eval_args(e, 1, s, args, kwargs);
          return call_method(self, callee.name, args, kwargs);
        }
        Value fn = eval(callee, s);
        if (fn.kind != Value::Kind::Callable) {
          if (fn.is_undefined()) throw RenderError{fn.s + " is undefined"};
          throw RenderError{std::string("'") + type_name(fn) + "' object is not callable"};
        }
        eval_args(e, 1, s, args, kwargs);
        return fn.fn->fn(args, kwargs);
      }
      case K::Filter: {
        Value in = eval(*e.args[0], s);
        std::vector<Value> args;
        Kwargs kwargs;
        eval_args(e, 1, s, args, kwargs);
        return apply_filter(e.name, in, args, kwargs);
      }
      case K::Test: {
        Value in = eval(*e.args[0], s);
        std::vector<Value> args;
        Kwargs kwargs;
        eval_args(e, 1, s, args, kwargs);
        return Value::boolean(apply_test(e.name, in, args) != e.negated);
      }
      case K::Unary: {
        Value v = eval(*e.args[0], s);
        if (e.name == "not") return Value::boolean(!truthy(v));
        if (!v.is_number()) {
          if (v.is_undefined()) throw RenderError{v.s + " is undefined"};
          throw RenderError{"bad operand type for unary " + e.name + ": '" + type_name(v) + "'"};
        }
        if (e.name == "+") return v.kind == Value::Kind::Float ? v : Value::integer(inum(v));
        return v.kind == Value::Kind::Float ? Value::real(-v.f) : Value::integer(-inum(v));
      }
      case K::Binary: {
        const std::string& op = e.name;
        Value a = eval(*e.args[0], s);
        if (op == "and") return truthy(a) ? eval(*e.args[1], s) : a;
        if (op == "or") return truthy(a) ? a : eval(*e.args[1], s);
        Value b = eval(*e.args[1], s);
        if (op == "~") return Value::string(str(a) + str(b));
        if (op == "==") return Value::boolean(equal(a, b));
        if (op == "!=") return Value::boolean(!equal(a, b));
        if (op == "<") return Value::boolean(compare(a, b, "<") < 0);
        if (op == ">") return Value::boolean(compare(a, b, ">") > 0);
        if (op == "<=") return Value::boolean(compare(a, b, "<=") <= 0);
        if (op == ">=") return Value::boolean(compare(a, b, ">=") >= 0);
        if (op == "in") return Value::boolean(contains(b, a));
        if (op == "not in") return Value::boolean(!contains(b, a));
        return arithmetic(op, a, b);
      }
      case K::Cond:
        if (truthy(eval(*e.args[1], s))) return eval(*e.args[0], s);
        return e.args[2] ? eval(*e.args[2], s) : Value::undefined("the else branch of an inline if");
    }
    throw RenderError{"unknown expression"};
  }

  void assign(Scope* s, const std::vector<std::string>& targets, const Value& v) {
    if (targets.size() == 1) {
      s->vars[targets[0]] = v;
      return;
    }
    std::vector<Value> items = iterate(v);
    if (items.size() != targets.size())
      throw RenderError{"cannot unpack " + std::to_string(items.size()) + " values into " + std::to_string(targets.size()) + " names"};
    for (size_t k = 0; k < targets.size(); ++k) s->vars[targets[k]] = items[k];
  }

  Flow exec(const Body& body, Scope* s, std::string& out) {
    for (const NodeP& n : body) {
      try {
        Flow f = exec_node(*n, s, out);
        if (f != Flow::Normal) return f;
      } catch (RenderError& err) {
        if (!err.line) err.line = n->line;
        throw;
      }
    }
    return Flow::Normal;
  }

  Flow exec_node(const Node& n, Scope* s, std::string& out) {
    using K = Node::Kind;
    switch (n.kind) {
      case K::Text: out += n.text; return Flow::Normal;
      case K::Output: out += str(eval(*n.expr, s)); return Flow::Normal;
      case K::If:
        for (const auto& [cond, body] : n.branches)
          if (!cond || truthy(eval(*cond, s))) return exec(body, s, out);
        return Flow::Normal;
      case K::For: return exec_for(n, s, out);
      case K::Set: {
        Value v = eval(*n.expr, s);
        if (!n.attr.empty()) {
          Value target = lookup(n.targets[0], s);
          if (target.kind != Value::Kind::Namespace)
            throw RenderError{"cannot assign attribute on non-namespace object '" + n.targets[0] + "'"};
          if (n.attr[0] == '_') throw RenderError{"Chat templates cannot store underscore-prefixed attributes on a namespace"};
          for (auto& [k, old] : target.ns->attrs)
            if (k == n.attr) {
              old = v;
              return Flow::Normal;
            }
          target.ns->attrs.emplace_back(n.attr, v);
          return Flow::Normal;
        }
        assign(s, n.targets, v);
        return Flow::Normal;
      }
      case K::SetBlock: {
        std::string captured;
        Scope inner{{}, s};
        exec(n.body, &inner, captured);
        s->vars[n.targets[0]] = Value::string(captured);
        return Flow::Normal;
      }
      case K::Macro: {
        const Node* def = &n;
        Scope* defining = s;
        s->vars[n.name] = Value::callable(n.name, [this, def, defining](std::vector<Value>& args, Kwargs& kwargs) {
          if (args.size() > def->params.size())
            throw RenderError{"macro '" + def->name + "' takes not more than " + std::to_string(def->params.size()) + " argument(s)"};
          Scope local{{}, defining};
          for (size_t k = 0; k < def->params.size(); ++k) {
            const auto& [pname, pdef] = def->params[k];
            const Value* given = k < args.size() ? &args[k] : nullptr;
            for (const auto& kv : kwargs)
              if (kv.first == pname) given = &kv.second;
            local.vars[pname] = given ? *given : pdef ? eval(*pdef, &local) : Value::undefined("'" + pname + "'");
          }
          for (const auto& kv : kwargs) {
            bool known = false;
            for (const auto& pr : def->params) known = known || pr.first == kv.first;
            if (!known) throw RenderError{"macro '" + def->name + "' takes no keyword argument '" + kv.first + "'"};
          }
          if (macro_depth >= 64) throw RenderError{"macro '" + def->name + "' nested more than 64 calls deep"};
          ++macro_depth;
          std::string text;
          try {
            exec(def->body, &local, text);
          } catch (...) {
            --macro_depth;
            throw;
          }
          --macro_depth;
          return Value::string(text);
        });
        return Flow::Normal;
      }
      case K::Break: return Flow::Break;
      case K::Continue: return Flow::Continue;
      case K::Generation: return exec(n.body, s, out);
    }
    return Flow::Normal;
  }

  Flow exec_for(const Node& n, Scope* s, std::string& out) {
    std::vector<Value> items = iterate(eval(*n.expr, s));
    if (n.filter) {
      std::vector<Value> kept;
      for (const Value& item : items) {
        Scope probe{{}, s};
        assign(&probe, n.targets, item);
        if (truthy(eval(*n.filter, &probe))) kept.push_back(item);
      }
      items = std::move(kept);
    }
    if (items.empty()) {
      if (!n.else_body.empty()) return exec(n.else_body, s, out) == Flow::Normal ? Flow::Normal : Flow::Normal;
      return Flow::Normal;
    }
    const int64_t len = (int64_t)items.size();
    for (int64_t k = 0; k < len; ++k) {
      Scope iter{{}, s};
      assign(&iter, n.targets, items[(size_t)k]);
      Dict loop = {{"index0", Value::integer(k)},
                   {"index", Value::integer(k + 1)},
                   {"revindex0", Value::integer(len - k - 1)},
                   {"revindex", Value::integer(len - k)},
                   {"first", Value::boolean(k == 0)},
                   {"last", Value::boolean(k == len - 1)},
                   {"length", Value::integer(len)},
                   {"depth", Value::integer(1)},
                   {"depth0", Value::integer(0)}};
      if (k > 0) loop.emplace_back("previtem", items[(size_t)k - 1]);
      if (k + 1 < len) loop.emplace_back("nextitem", items[(size_t)k + 1]);
      iter.vars["loop"] = Value::dict_of(std::move(loop));
      if (exec(n.body, &iter, out) == Flow::Break) break;
    }
    return Flow::Normal;
  }
};

}  // namespace

std::string render(const Body& body, const Dict& variables) {
  Scope globals_scope;
  for (auto& [k, v] : globals()) globals_scope.vars[k] = v;
  Scope top{{}, &globals_scope};
  for (const auto& [k, v] : variables) top.vars[k] = v;
  Renderer r;
  r.root = &top;
  std::string out;
  r.exec(body, &top, out);
  return out;
}

}  // namespace strata::jinja
