#include "infer/jinja/parser.h"

#include <set>

#include "infer/jinja/builtins.h"

namespace strata::jinja {
namespace {

using T = Token::Type;

ExprP make(Expr::Kind kind, int line, std::vector<ExprP> args = {}, std::string name = "") {
  auto e = std::make_shared<Expr>();
  e->kind = kind;
  e->line = line;
  e->args = std::move(args);
  e->name = std::move(name);
  return e;
}

struct Parser {
  std::vector<Token> t;
  size_t p = 0;
  int depth = 0;  // of nested blocks and expressions: bounded, so no template exhausts the stack

  struct Nested {
    Parser& ps;
    explicit Nested(Parser& p) : ps(p) {
      if (++ps.depth > 200) ps.fail("blocks or expressions nested more than 200 levels deep");
    }
    ~Nested() { --ps.depth; }
  };

  const Token& cur() const { return t[p]; }
  const Token& peek(size_t k = 1) const { return t[std::min(p + k, t.size() - 1)]; }
  bool is_op(const char* op) const { return cur().type == T::Op && cur().text == op; }
  bool is_name(const char* n) const { return cur().type == T::Name && cur().text == n; }
  [[noreturn]] void fail(const std::string& msg) const { throw SyntaxError{msg, cur().line}; }
  std::string describe(const Token& k) const {
    switch (k.type) {
      case T::Eof: return "end of template";
      case T::BlockEnd: return "'%}'";
      case T::VarEnd: return "'}}'";
      case T::String: return "string literal";
      default: return "'" + k.text + "'";
    }
  }
  void expect_op(const char* op) {
    if (!is_op(op)) fail(std::string("expected '") + op + "', got " + describe(cur()));
    ++p;
  }
  std::string expect_name(const char* what) {
    if (cur().type != T::Name) fail(std::string("expected ") + what + ", got " + describe(cur()));
    return t[p++].text;
  }
  void expect(T type, const char* what) {
    if (cur().type != type) fail(std::string("expected ") + what + ", got " + describe(cur()));
    ++p;
  }

  // ---- statements ----
  // Nodes up to one of `ends` ({% end %} consumed up to its name; *which names it) or the end.
  Body body(const std::set<std::string>& ends, std::string* which, const std::string& opener, int open_line) {
    Body out;
    for (;;) {
      const Token& k = cur();
      if (k.type == T::Eof) {
        if (ends.empty()) return out;
        throw SyntaxError{"'{% " + opener + " %}' is never closed (expected '{% " + *ends.rbegin() + " %}')", open_line};
      }
      if (k.type == T::Data) {
        auto n = std::make_shared<Node>();
        n->kind = Node::Kind::Text;
        n->line = k.line;
        n->text = k.text;
        out.push_back(n);
        ++p;
      } else if (k.type == T::VarBegin) {
        ++p;
        auto n = std::make_shared<Node>();
        n->kind = Node::Kind::Output;
        n->line = k.line;
        n->expr = tuple_expr(true);
        expect(T::VarEnd, "'}}'");
        out.push_back(n);
      } else if (k.type == T::BlockBegin) {
        const Token& name = peek();
        if (name.type == T::Name && ends.count(name.text)) {
          p += 2;
          *which = name.text;
          return out;
        }
        ++p;
        out.push_back(statement());
      } else {
        fail("unexpected " + describe(k));
      }
    }
  }

  NodeP statement() {
    Nested nested(*this);
    int line = cur().line;
    if (cur().type != T::Name) fail("expected a statement name after '{%', got " + describe(cur()));
    std::string kw = t[p++].text;
    auto n = std::make_shared<Node>();
    n->line = line;
    std::string end;
    if (kw == "if") {
      n->kind = Node::Kind::If;
      ExprP cond = tuple_expr(true);
      for (;;) {
        expect(T::BlockEnd, "'%}'");
        Body b = body({"elif", "else", "endif"}, &end, "if", line);
        n->branches.emplace_back(cond, std::move(b));
        if (end == "elif") {
          cond = tuple_expr(true);
        } else if (end == "else") {
          expect(T::BlockEnd, "'%}'");
          n->branches.emplace_back(nullptr, body({"endif"}, &end, "if", line));
          expect(T::BlockEnd, "'%}'");
          break;
        } else {
          expect(T::BlockEnd, "'%}'");
          break;
        }
      }
    } else if (kw == "for") {
      n->kind = Node::Kind::For;
      n->targets.push_back(expect_name("a loop variable"));
      while (is_op(",")) {
        ++p;
        n->targets.push_back(expect_name("a loop variable"));
      }
      if (!is_name("in")) fail("expected 'in' in the for loop, got " + describe(cur()));
      ++p;
      n->expr = tuple_expr(false);
      if (is_name("if")) {
        ++p;
        n->filter = expression(true);
      }
      if (is_name("recursive")) fail("unsupported construct 'recursive' loop");
      expect(T::BlockEnd, "'%}'");
      n->body = body({"endfor", "else"}, &end, "for", line);
      if (end == "else") {
        expect(T::BlockEnd, "'%}'");
        n->else_body = body({"endfor"}, &end, "for", line);
      }
      expect(T::BlockEnd, "'%}'");
    } else if (kw == "set") {
      n->targets.push_back(expect_name("a variable name"));
      if (is_op(".")) {
        ++p;
        n->attr = expect_name("an attribute name");
      } else {
        while (is_op(",")) {
          ++p;
          n->targets.push_back(expect_name("a variable name"));
        }
      }
      if (is_op("=")) {
        ++p;
        n->kind = Node::Kind::Set;
        n->expr = tuple_expr(true);
        expect(T::BlockEnd, "'%}'");
      } else {
        if (!n->attr.empty() || n->targets.size() != 1) fail("expected '=' in the set statement");
        if (is_op("|")) fail("unsupported construct: filtered block set '{% set x | filter %}'");
        n->kind = Node::Kind::SetBlock;
        expect(T::BlockEnd, "'%}'");
        n->body = body({"endset"}, &end, "set", line);
        expect(T::BlockEnd, "'%}'");
      }
    } else if (kw == "macro") {
      n->kind = Node::Kind::Macro;
      n->name = expect_name("a macro name");
      expect_op("(");
      while (!is_op(")")) {
        if (!n->params.empty()) expect_op(",");
        std::string param = expect_name("a parameter name");
        ExprP def;
        if (is_op("=")) {
          ++p;
          def = expression(true);
        }
        n->params.emplace_back(param, def);
      }
      ++p;
      expect(T::BlockEnd, "'%}'");
      n->body = body({"endmacro"}, &end, "macro", line);
      if (cur().type == T::Name) ++p;  // {% endmacro name %}
      expect(T::BlockEnd, "'%}'");
    } else if (kw == "break" || kw == "continue") {
      n->kind = kw == "break" ? Node::Kind::Break : Node::Kind::Continue;
      expect(T::BlockEnd, "'%}'");
    } else if (kw == "generation") {
      n->kind = Node::Kind::Generation;
      expect(T::BlockEnd, "'%}'");
      n->body = body({"endgeneration"}, &end, "generation", line);
      expect(T::BlockEnd, "'%}'");
    } else if (kw.rfind("end", 0) == 0 || kw == "elif" || kw == "else") {
      throw SyntaxError{"unexpected '{% " + kw + " %}' outside the block it would close", line};
    } else {
      throw SyntaxError{"unsupported construct '{% " + kw + " %}'", line};
    }
    return n;
  }

  // ---- expressions ----
  ExprP tuple_expr(bool with_condexpr) {
    int line = cur().line;
    ExprP first = expression(with_condexpr);
    if (!is_op(",")) return first;
    std::vector<ExprP> items{first};
    while (is_op(",")) {
      ++p;
      if (cur().type == T::BlockEnd || cur().type == T::VarEnd || is_op(")") || is_name("if")) break;
      items.push_back(expression(with_condexpr));
    }
    auto e = make(Expr::Kind::List, line, std::move(items));
    std::const_pointer_cast<Expr>(e)->is_tuple = true;
    return e;
  }

  ExprP expression(bool with_condexpr) {
    Nested nested(*this);
    ExprP e = or_expr();
    while (with_condexpr && is_name("if")) {
      int line = cur().line;
      ++p;
      ExprP cond = or_expr();
      ExprP otherwise;
      if (is_name("else")) {
        ++p;
        otherwise = expression(true);
      }
      e = make(Expr::Kind::Cond, line, {e, cond, otherwise});
    }
    return e;
  }
  ExprP or_expr() {
    ExprP e = and_expr();
    while (is_name("or")) {
      int line = cur().line;
      ++p;
      e = make(Expr::Kind::Binary, line, {e, and_expr()}, "or");
    }
    return e;
  }
  ExprP and_expr() {
    ExprP e = not_expr();
    while (is_name("and")) {
      int line = cur().line;
      ++p;
      e = make(Expr::Kind::Binary, line, {e, not_expr()}, "and");
    }
    return e;
  }
  ExprP not_expr() {
    Nested nested(*this);
    if (is_name("not")) {
      int line = cur().line;
      ++p;
      return make(Expr::Kind::Unary, line, {not_expr()}, "not");
    }
    return compare();
  }
  ExprP compare() {
    ExprP e = math1();
    ExprP prev = e;
    ExprP chain;
    for (;;) {
      int line = cur().line;
      std::string op;
      if (cur().type == T::Op && (cur().text == "==" || cur().text == "!=" || cur().text == "<" || cur().text == ">" ||
                                  cur().text == "<=" || cur().text == ">=")) {
        op = cur().text;
        ++p;
      } else if (is_name("in")) {
        op = "in";
        ++p;
      } else if (is_name("not") && peek().type == T::Name && peek().text == "in") {
        op = "not in";
        p += 2;
      } else {
        break;
      }
      ExprP rhs = math1();
      ExprP c = make(Expr::Kind::Binary, line, {prev, rhs}, op);
      chain = chain ? make(Expr::Kind::Binary, line, {chain, c}, "and") : c;  // a < b < c: (a < b) and (b < c)
      prev = rhs;
    }
    return chain ? chain : e;
  }
  ExprP math1() {
    ExprP e = concat();
    while (is_op("+") || is_op("-")) {
      int line = cur().line;
      std::string op = t[p++].text;
      e = make(Expr::Kind::Binary, line, {e, concat()}, op);
    }
    return e;
  }
  ExprP concat() {
    ExprP e = math2();
    while (is_op("~")) {
      int line = cur().line;
      ++p;
      e = make(Expr::Kind::Binary, line, {e, math2()}, "~");
    }
    return e;
  }
  ExprP math2() {
    ExprP e = power();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      int line = cur().line;
      std::string op = t[p++].text;
      if (op == "%" && e->kind == Expr::Kind::Literal && e->value.is_string())
        throw SyntaxError{"unsupported construct: '%' string formatting", line};
      e = make(Expr::Kind::Binary, line, {e, power()}, op);
    }
    return e;
  }
  ExprP power() {
    ExprP e = unary(true);
    while (is_op("**")) {
      int line = cur().line;
      ++p;
      e = make(Expr::Kind::Binary, line, {e, unary(true)}, "**");
    }
    return e;
  }
  ExprP unary(bool with_filter) {
    Nested nested(*this);
    int line = cur().line;
    ExprP e;
    if (is_op("-") || is_op("+")) {
      std::string op = t[p++].text;
      e = make(Expr::Kind::Unary, line, {unary(false)}, op);
    } else {
      e = primary();
    }
    e = postfix(e);
    if (with_filter) e = filters(e);
    return e;
  }

  ExprP primary() {
    const Token& k = cur();
    int line = k.line;
    auto lit = [&](Value v) {
      auto e = std::make_shared<Expr>();
      e->kind = Expr::Kind::Literal;
      e->line = line;
      e->value = std::move(v);
      return e;
    };
    if (k.type == T::Name) {
      ++p;
      if (k.text == "true" || k.text == "True") return lit(Value::boolean(true));
      if (k.text == "false" || k.text == "False") return lit(Value::boolean(false));
      if (k.text == "none" || k.text == "None") return lit(Value::none());
      return make(Expr::Kind::Name, line, {}, k.text);
    }
    if (k.type == T::String) {
      std::string s;
      while (cur().type == T::String) s += t[p++].text;
      return lit(Value::string(s));
    }
    if (k.type == T::Int) {
      ++p;
      return lit(Value::integer(k.i));
    }
    if (k.type == T::Float) {
      ++p;
      return lit(Value::real(k.f));
    }
    if (is_op("(")) {
      ++p;
      if (is_op(")")) {
        ++p;
        auto e = make(Expr::Kind::List, line);
        std::const_pointer_cast<Expr>(e)->is_tuple = true;
        return e;
      }
      ExprP e = tuple_expr(true);
      expect_op(")");
      return e;
    }
    if (is_op("[")) {
      ++p;
      std::vector<ExprP> items;
      while (!is_op("]")) {
        if (!items.empty()) {
          expect_op(",");
          if (is_op("]")) break;
        }
        items.push_back(expression(true));
      }
      ++p;
      return make(Expr::Kind::List, line, std::move(items));
    }
    if (is_op("{")) {
      ++p;
      std::vector<ExprP> items;
      while (!is_op("}")) {
        if (!items.empty()) {
          expect_op(",");
          if (is_op("}")) break;
        }
        items.push_back(expression(true));
        expect_op(":");
        items.push_back(expression(true));
      }
      ++p;
      return make(Expr::Kind::Dict, line, std::move(items));
    }
    fail("unexpected " + describe(k) + " in an expression");
  }

  ExprP postfix(ExprP e) {
    for (;;) {
      int line = cur().line;
      if (is_op(".")) {
        ++p;
        if (cur().type == T::Int) {
          auto idx = std::make_shared<Expr>();
          idx->kind = Expr::Kind::Literal;
          idx->line = line;
          idx->value = Value::integer(t[p++].i);
          e = make(Expr::Kind::Item, line, {e, idx});
        } else {
          e = make(Expr::Kind::Attr, line, {e}, expect_name("an attribute name"));
        }
      } else if (is_op("[")) {
        ++p;
        ExprP parts[3];
        bool slice = false;
        for (int k = 0; k < 3; ++k) {
          if (!is_op(":") && !is_op("]")) parts[k] = expression(true);
          if (k < 2 && is_op(":")) {
            slice = true;
            ++p;
          } else {
            break;
          }
        }
        expect_op("]");
        e = slice ? make(Expr::Kind::Slice, line, {e, parts[0], parts[1], parts[2]})
                  : make(Expr::Kind::Item, line, {e, parts[0]});
        if (!slice && !parts[0]) throw SyntaxError{"empty subscript '[]'", line};
      } else if (is_op("(")) {
        e = call(e);
      } else {
        return e;
      }
    }
  }

  // Arguments of a call, filter or test: positional, then name=value.
  void call_args(std::vector<ExprP>& args, std::vector<std::pair<std::string, ExprP>>& kwargs) {
    expect_op("(");
    bool first = true;
    while (!is_op(")")) {
      if (!first) {
        expect_op(",");
        if (is_op(")")) break;
      }
      first = false;
      if (is_op("**")) fail("unsupported construct: '**kwargs' in a call");
      if (is_op("*")) {  // *list: its items as positional arguments
        ++p;
        auto star = std::make_shared<Expr>();
        star->kind = Expr::Kind::Unary;
        star->line = cur().line;
        star->name = "*";
        star->args.push_back(expression(true));
        args.push_back(star);
        continue;
      }
      if (cur().type == T::Name && peek().type == T::Op && peek().text == "=") {
        std::string key = t[p].text;
        p += 2;
        kwargs.emplace_back(key, expression(true));
      } else {
        if (!kwargs.empty()) fail("a positional argument follows a keyword argument");
        args.push_back(expression(true));
      }
    }
    ++p;
  }

  ExprP call(ExprP callee) {
    int line = cur().line;
    if (callee->kind == Expr::Kind::Attr && !has_method(callee->name))
      throw SyntaxError{"unsupported method '." + callee->name + "()'", line};
    if (callee->kind == Expr::Kind::Name &&
        (callee->name == "cycler" || callee->name == "joiner" || callee->name == "lipsum" || callee->name == "caller"))
      throw SyntaxError{"unsupported function '" + callee->name + "()'", line};
    auto e = std::make_shared<Expr>();
    e->kind = Expr::Kind::Call;
    e->line = line;
    e->args.push_back(callee);
    call_args(e->args, e->kwargs);
    return e;
  }

  ExprP filters(ExprP e) {
    for (;;) {
      int line = cur().line;
      if (is_op("|")) {
        ++p;
        std::string name = expect_name("a filter name");
        if (!has_filter(name)) throw SyntaxError{"unsupported filter '" + name + "'", line};
        auto f = std::make_shared<Expr>();
        f->kind = Expr::Kind::Filter;
        f->line = line;
        f->name = name;
        f->args.push_back(e);
        if (is_op("(")) call_args(f->args, f->kwargs);
        e = f;
      } else if (is_name("is")) {
        ++p;
        auto f = std::make_shared<Expr>();
        f->kind = Expr::Kind::Test;
        f->line = line;
        if (is_name("not")) {
          ++p;
          f->negated = true;
        }
        std::string name = expect_name("a test name");
        if (!has_test(name)) throw SyntaxError{"unsupported test '" + name + "'", line};
        f->name = name;
        f->args.push_back(e);
        if (is_op("(")) {
          call_args(f->args, f->kwargs);
        } else if ((cur().type == T::Name || cur().type == T::String || cur().type == T::Int || cur().type == T::Float ||
                    is_op("[") || is_op("{")) &&
                   !is_name("else") && !is_name("or") && !is_name("and")) {
          if (is_name("is")) fail("tests cannot be chained with 'is'");
          f->args.push_back(postfix(primary()));
        }
        e = f;
      } else if (is_op("(")) {
        e = call(e);
      } else {
        return e;
      }
    }
  }
};

}  // namespace

Body parse(const std::string& source) {
  Parser ps;
  ps.t = lex(source);
  std::string end;
  return ps.body({}, &end, "", 0);
}

}  // namespace strata::jinja
