// The Jinja interpreter behind chat templates (src/infer/jinja/): every construct against Jinja itself
// (tests/jinja_oracle.py renders each snippet in transformers' chat-template environment: trim_blocks,
// lstrip_blocks, loop controls, its tojson), byte for byte, including which snippets fail; then, without
// Python, the constructs it refuses, each named with its line, and a few outputs written out.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "infer/jinja/parser.h"
#include "infer/jinja/render.h"
#include "python_oracle.h"
#include "temp_dir.h"

using namespace strata::jinja;
using Json = nlohmann::ordered_json;  // keeps the dict order the snippets are written in

namespace {

Value from_json(const Json& j) {
  if (j.is_null()) return Value::none();
  if (j.is_boolean()) return Value::boolean(j.get<bool>());
  if (j.is_number_integer()) return Value::integer(j.get<int64_t>());
  if (j.is_number()) return Value::real(j.get<double>());
  if (j.is_string()) return Value::string(j.get<std::string>());
  if (j.is_array()) {
    List l;
    for (const auto& x : j) l.push_back(from_json(x));
    return Value::list_of(std::move(l));
  }
  Dict d;
  for (auto it = j.begin(); it != j.end(); ++it) d.emplace_back(it.key(), from_json(it.value()));
  return Value::dict_of(std::move(d));
}

std::string render_text(const std::string& tmpl, const Json& vars = Json::object()) {
  Dict d;
  for (auto it = vars.begin(); it != vars.end(); ++it) d.emplace_back(it.key(), from_json(it.value()));
  return render(parse(tmpl), d);
}

struct Case {
  const char* tmpl;
  const char* vars;
};

// Snippets, one or a few constructs each; the vars are JSON (ordered_json keeps dict order).
const Case kCases[] = {
    {"{{ 'a' ~ 1 ~ none ~ true ~ x }}", R"({"x": 2.5})"},
    {"  {% if true %}\n  x\n  {% endif %}\n  y", "{}"},
    {"{%- if true -%}  a  {%- endif -%}  b\n{{- ' c ' -}}\n d", "{}"},
    {"  {%+ if true %}x{% endif +%}\ny\n  {# c #}\n  z", "{}"},
    {"a{# c #}\nb  {#- c -#}  c\n{# x #}\n  d\n", "{}"},
    {"line1\r\nline2\r\n{% if true %}\r\nin\r\n{% endif %}\r\n", "{}"},
    {"{% for x in xs %}{{ loop.index0 }}{{ loop.index }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }}"
     "{{ loop.revindex0 }}{{ loop.previtem is defined }}{{ loop.nextitem }}|{% endfor %}",
     R"({"xs": ["a", "b", "c"]})"},
    {"{% for x in xs if x > 1 %}{{ x }}/{{ loop.length }} {% else %}none{% endfor %}", R"({"xs": [1, 2, 3]})"},
    {"{% for x in [] %}a{% else %}empty{% endfor %}{% for x in undefined_name %}u{% endfor %}", "{}"},
    {"{% for a in [1,2] %}{% for b in [3,4] %}{{ loop.index }}{% endfor %}{{ loop.index }}.{% endfor %}", "{}"},
    {"{% for x in xs %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}",
     R"({"xs": [1, 2, 3, 4, 5]})"},
    {"{% set ns = namespace(n=0, s='') %}{% for x in xs %}{% set ns.n = ns.n + x %}{% set ns.s = ns.s ~ x %}{% endfor %}"
     "{{ ns.n }} {{ ns.s }} {{ ns.missing is defined }}",
     R"({"xs": [1, 2, 3]})"},
    {"{% set x = 1 %}{% for i in [1,2] %}{{ x }}{% set x = x + 1 %}{{ x }}{% endfor %}{{ x }}"
     "{% if true %}{% set y = 5 %}{% endif %}{{ y }}",
     "{}"},
    {"{% set a, b = 1, 'two' %}{{ a }}{{ b }}{% set t = (1, 2) %}{{ t }}{{ (1,) }}{{ () }}", "{}"},
    {"{% set x %}inner {{ 1 + 1 }}{% endset %}[{{ x }}]", "{}"},
    {"{% macro f(a, b='d') %}[{{ a }}{{ b }}{{ g }}]{% endmacro %}{% set g = 'G' %}{{ f(1) }}{{ f(1, 2) }}{{ f(a=3, b=4) }}"
     "{% macro h(xs) %}{{ xs | length }}{% endmacro %}{{ h(*[[1, 2]]) }}",
     "{}"},
    {"{{ '  x  ' | trim }}|{{ 'xxayxx' | trim('x') }}|{{ 'abc' | upper }}|{{ 'ÀBß' | lower }}|{{ 'straße' | upper }}|"
     "{{ [1,2,3] | length }}|{{ 'héllo' | length }}|{{ d | count }}|{{ undefined_x | length }}",
     R"({"d": {"a": 1, "b": 2}})"},
    {"{{ none | default('d') }}|{{ undefined_x | default('d') }}|{{ '' | default('e', true) }}|{{ 0 | d(7, boolean=true) }}"
     "|{{ undefined_x | d }}|",
     "{}"},
    {"{{ [1,2] | join(', ') }}|{{ ['a'] | join }}|{{ ms | join('/', attribute='role') }}|{{ [3,4] | first }}{{ [3,4] | last }}"
     "|{{ 'abc' | first }}{{ 'abc' | last }}|{{ [] | first }}|",
     R"({"ms": [{"role": "user"}, {"role": "assistant"}]})"},
    {"{{ 'aXbXc' | replace('X', '-') }}|{{ 'aXbXc' | replace('X', '', 1) }}|{{ 1 | string }}{{ none | string }}|"
     "{{ 'hello WORLD' | capitalize }}|{{ 'hello-world foo(bar) x_y' | title }}|{{ 'it''s a dog'.title() }}",
     "{}"},
    {"{{ {'a': [1, 2.5, none, true, 'é\"\\n\\u0001'], 'b': {}} | tojson }}|{{ x | tojson(indent=2) }}|"
     "{{ x | tojson(sort_keys=true) }}|{{ 'ü' | tojson }}|{{ [] | tojson(indent=4) }}|{{ x | tojson(separators=(',', ':')) }}",
     R"({"x": {"z": 1, "a": [1, {"k": "v"}], "m": 0.1}})"},
    {"{{ x is defined }}{{ y is defined }}{{ y is undefined }}{{ none is none }}{{ 'a' is string }}{{ {} is mapping }}"
     "{{ [] is iterable }}{{ 'a' is iterable }}{{ 1 is number }}{{ 2 is even }}{{ 3 is odd }}{{ 1 is equalto 1 }}"
     "{{ 'a' is in 'abc' }}{{ x is not none }}{{ true is boolean }}{{ 1 is integer }}{{ 1.0 is float }}{{ 6 is divisibleby 3 }}"
     "{{ 'abc' is lower }}{{ 'ABC' is upper }}{{ x is sameas x }}{{ none is sameas none }}{{ 1 is eq 1 }}{{ 2 is gt 1 }}"
     "{{ y is iterable }}{{ [] is sequence }}{{ range is callable }}{{ 1 is true }}{{ true is true }}{{ false is false }}",
     R"({"x": 1})"},
    {"{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} "
     "{{ 'ab' * 3 }} {{ 1 == 1.0 }} {{ 'a' < 'b' }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ not 1 in [1] }} {{ 2 not in [1] }} "
     "{{ 'b' in 'abc' }} {{ 'k' in {'k': 1} }} {{ 1 if false }} {{ 1 if false else 2 }} {{ none or 'x' }} {{ 0 and 1 }} "
     "{{ -2 ** 2 }} {{ 7.5 // 2 }} {{ -7.5 % 2 }} {{ [1] + [2] }} {{ true + 1 }} {{ 10 - 2.5 }} {{ 1e3 }} {{ 1_000 }}",
     "{}"},
    {"{{ xs | length > 2 }} {{ xs | length + 1 }} {{ -xs[0] }} {{ not xs }} {{ xs and 'yes' }}", R"({"xs": [1, 2, 3]})"},
    {"{{ ' a b '.strip() }}|{{ 'xxaxx'.strip('x') }}|{{ 'xxa'.lstrip('x') }}|{{ 'axx'.rstrip('x') }}|"
     "{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a b c'.split(' ', 1) }}|{{ 'abc'.startswith('ab') }}|"
     "{{ 'abc'.endswith(('x', 'c')) }}|{{ 'aaa'.replace('a', 'b', 2) }}|{{ 'Hello'.upper() }}{{ 'Hello'.lower() }}|"
     "{{ 'héllo'.find('l') }}|{{ '-'.join(['a', 'b']) }}|{{ '\\n a\\n'.lstrip() }}|{{ 'a</think>b</think>c'.split('</think>', 1) }}|"
     "{{ 'banana'.count('an') }}|{{ 'ab'.capitalize() }}",
     "{}"},
    {"{{ xs[0] }}{{ xs[-1] }}{{ xs[1:] }}{{ xs[::-1] }}{{ xs[:-1] }}{{ xs[5:] }}{{ xs[-5:1] }}{{ xs[::2] }}{{ 'héllo'[1] }}"
     "{{ 'héllo'[::-1] }}{{ 'héllo'[1:3] }}{{ d['k'] }}{{ d.k }}{{ d.get('z', 'dz') }}{{ d.get('k') }}{{ d.get('zz') }}"
     "{{ d.items() | list }}{{ d.keys() | list }}{{ d.values() | list }}{{ xs.1 }}{{ d.missing }}{{ xs[10] }}|",
     R"({"xs": [1, 2, 3], "d": {"k": "v", "n": 2}})"},
    {"{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k in d %}{{ k }}{% endfor %}"
     "{% for k, v in d | items %}{{ k }}{% endfor %}{% for c in 'hé' %}[{{ c }}]{% endfor %}",
     R"({"d": {"b": 1, "a": 2}})"},
    {"{{ [1, 'a', none, true, 1.5] }}{{ {'a': 'b', 'c': [1]} }}{{ 1.0 }} {{ 1e20 }} {{ 1e16 }} {{ 123456789012345.6 }} "
     "{{ 0.0001 }} {{ 1e-5 }} {{ 0.1 + 0.2 }} {{ none }} {{ 'it''s' }} {{ [\"it's\"] }} {{ ['a\"b'] }} {{ ['a\\nb\\\\'] }} "
     "{{ -0.0 }} {{ 2 / 3 }} {{ 10 / 5 }} {{ 3.0 * 2 }}",
     "{}"},
    {"{{ ms | selectattr('role', 'equalto', 'user') | map(attribute='content') | join(',') }}|"
     "{{ ms | rejectattr('role', 'equalto', 'user') | list | length }}|{{ [1, 0, 2] | select | list }}|"
     "{{ ['a', 'b'] | map('upper') | list }}|{{ ms | selectattr('content') | list | length }}|"
     "{{ [3, 1, 2] | reject('odd') | list }}|{{ ms | map(attribute='x', default='-') | list }}|{{ [1, 2, 1] | unique | list }}"
     "|{{ [1, 2] | reverse | list }}{{ 'abc' | reverse }}|{{ [1, 2.5] | sum }}|{{ '42' | int }}{{ 'x' | int }}{{ 3.9 | int }}"
     "{{ '2.5' | float }}|{{ -3 | abs }}|{{ 'ab' | list }}",
     R"({"ms": [{"role": "user", "content": "a"}, {"role": "assistant", "content": ""}, {"role": "user", "content": "c"}]})"},
    {"{{ range(3) | list }}{% for i in range(1, 7, 2) %}{{ i }}{% endfor %}{% for i in range(3, 0, -1) %}{{ i }}{% endfor %}"
     "{{ dict(a=1, b='x') | tojson }}{{ {'a': 1, 'a': 2} }}{{ 'x' if y is defined else 'z' }}",
     "{}"},
    {"{{ '\\u3000x\\u00a0\\x1f' | trim }}|{{ s | trim }}|{{ s.strip() }}|{{ s.split() }}|{{ 'a\\tb\\u00e9\\x41\\101\\q' }}",
     R"({"s": "\u2003 mid\u2028dle \u0085"})"},
    {"{% if a %}A{% elif b %}B{% elif c %}C{% else %}D{% endif %}", R"({"a": 0, "b": "", "c": [1]})"},
    {"{% generation %}gen {{ 1 }}{% endgeneration %}", "{}"},
    {"{{ m.role }} {{ m['content'] }} {{ m.content | trim }} {{ 'tool_calls' in m }} {{ m.tool_calls is defined }}",
     R"({"m": {"role": "user", "content": " hi "}})"},
    {"{{ x in ('a', 'b') }}{{ 'c' in ['a', 'b'] }}{% if not u %}!{% endif %}{{ u | default(none) }}{{ \"a\" 'b' }}"
     "{{ ms | length }}{{ ms[0]['content'] if ms else '' }}{{ ms[5] is defined }}{{ (ms | last).role }}",
     R"({"x": "a", "ms": [{"role": "user", "content": "hi"}]})"},
    {"{%- for m in ms -%}\n  {%- if m.role == 'user' -%}\n    U:{{ m.content }}\n  {%- else -%}\n    A:{{ m.content }}\n"
     "  {%- endif -%}\n{%- endfor -%}\n",
     R"({"ms": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]})"},
    {"{% for m in ms %}\n\t{% if loop.first %}\n[{{ m }}]\n    {% endif %}\n{% endfor %}", R"({"ms": [1, 2]})"},
    {"{{ x.y.z }}", "{}"},
    {"{{ 'a' + 1 }}", "{}"},
    {"{{ undefined_v + 1 }}", "{}"},
    {"{{ raise_exception('boom ' ~ 1) }}", "{}"},
    {"{{ [1] + none }}", "{}"},
    {"{{ 1 / 0 }}", "{}"},
    {"{{ x | tojson }}", "{}"},
    {"{{ none.attr }}{{ 1 < 'a' }}", "{}"},
    {"{% set ns = namespace(a=1) %}{% set ns._b = 2 %}", "{}"},
    {"{% set x = 1 %}{% set x.a = 2 %}", "{}"},
};

}  // namespace

TEST(Jinja, MatchesJinjaOnEverySnippet) {
  std::string why;
  std::string python = strata::testing::test_python(&why);
  if (python.empty()) GTEST_SKIP() << "no Python oracle venv: " << why;
  strata::testing::TempDir dir("jinja_");
  Json cases = Json::array();
  for (const Case& c : kCases) cases.push_back({{"template", c.tmpl}, {"vars", Json::parse(c.vars)}});
  std::ofstream(dir / "cases.json") << cases.dump();
  std::string out;
  int rc = strata::testing::run_command(
      strata::testing::shell_quote(python) + " " +
          strata::testing::shell_quote(strata::testing::source_dir() + "/tests/jinja_oracle.py") + " " +
          strata::testing::shell_quote(dir / "cases.json"),
      &out);
  ASSERT_EQ(rc, 0) << out;
  Json want = Json::parse(out);
  ASSERT_EQ(want.size(), std::size(kCases));
  int failing = 0;
  for (size_t k = 0; k < std::size(kCases); ++k) {
    SCOPED_TRACE("case " + std::to_string(k) + ": " + kCases[k].tmpl);
    Json vars = Json::parse(kCases[k].vars);
    std::string got, err;
    try {
      Dict d;
      for (auto it = vars.begin(); it != vars.end(); ++it) d.emplace_back(it.key(), from_json(it.value()));
      got = render(parse(kCases[k].tmpl), d);
    } catch (const SyntaxError& e) {
      err = "syntax error line " + std::to_string(e.line) + ": " + e.message;
    } catch (const RenderError& e) {
      err = "render error line " + std::to_string(e.line) + ": " + e.message;
    }
    if (want[k]["ok"].get<bool>()) {
      EXPECT_EQ(err, "");
      EXPECT_EQ(got, want[k]["text"].get<std::string>());
    } else {
      EXPECT_NE(err, "") << "Jinja refused (" << want[k]["error"] << ") but we rendered: " << got;
      ++failing;
    }
  }
  std::printf("%zu snippets compared with Jinja (%d that Jinja refuses, refused here too)\n", std::size(kCases), failing);
}

TEST(Jinja, RefusesUnsupportedConstructsNamingThemAndTheirLine) {
  auto syntax = [](const std::string& t) -> std::string {
    try {
      parse(t);
    } catch (const SyntaxError& e) {
      return "line " + std::to_string(e.line) + ": " + e.message;
    }
    return "(accepted)";
  };
  EXPECT_EQ(syntax("a\n{% include 'x.j2' %}"), "line 2: unsupported construct '{% include %}'");
  EXPECT_EQ(syntax("{% extends 'base' %}"), "line 1: unsupported construct '{% extends %}'");
  EXPECT_EQ(syntax("{% raw %}x{% endraw %}"), "line 1: unsupported construct '{% raw %}'");
  EXPECT_EQ(syntax("\n\n{% filter upper %}x{% endfilter %}"), "line 3: unsupported construct '{% filter %}'");
  EXPECT_EQ(syntax("{% call f() %}x{% endcall %}"), "line 1: unsupported construct '{% call %}'");
  EXPECT_EQ(syntax("{% do xs.append(1) %}"), "line 1: unsupported construct '{% do %}'");
  EXPECT_EQ(syntax("x\n{{ y | wordcount }}"), "line 2: unsupported filter 'wordcount'");
  EXPECT_EQ(syntax("{{ y is escaped }}"), "line 1: unsupported test 'escaped'");
  EXPECT_EQ(syntax("{{ '{}'.format(1) }}"), "line 1: unsupported method '.format()'");
  EXPECT_EQ(syntax("{% for x in y recursive %}{% endfor %}"), "line 1: unsupported construct 'recursive' loop");
  EXPECT_EQ(syntax("{{ f(**kw) }}"), "line 1: unsupported construct: '**kwargs' in a call");
  EXPECT_EQ(syntax("{{ cycler('a', 'b') }}"), "line 1: unsupported function 'cycler()'");
  EXPECT_EQ(syntax("{{ '%s!' % name }}"), "line 1: unsupported construct: '%' string formatting");
  EXPECT_EQ(syntax("{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}"),
            "line 1: blocks or expressions nested more than 200 levels deep");
  EXPECT_EQ(syntax("{{ " + std::string(5000, '-') + "1 }}"), "line 1: blocks or expressions nested more than 200 levels deep");
  EXPECT_EQ(syntax("{% set x | upper %}a{% endset %}"), "line 1: unsupported construct: filtered block set '{% set x | filter %}'");
  EXPECT_EQ(syntax("\n{% if x %}\nno end"), "line 2: '{% if %}' is never closed (expected '{% endif %}')");
  EXPECT_EQ(syntax("{% endfor %}"), "line 1: unexpected '{% endfor %}' outside the block it would close");
  EXPECT_EQ(syntax("{{ 'open }}"), "line 1: unterminated string literal");
  EXPECT_EQ(syntax("{{ x "), "line 1: unexpected end of template: missing '}}'");
  EXPECT_EQ(syntax("{# no end"), "line 1: unterminated comment '{#'");
  EXPECT_EQ(syntax("{{ a $ b }}"), "line 1: unexpected character '$'");
  EXPECT_EQ(syntax("{{ [1 }}"), "line 1: unexpected '}', expected ']'");
  EXPECT_EQ(syntax("{{ (1 "), "line 1: unexpected end of template: missing '}}' ('(' is still open)");
  EXPECT_EQ(syntax("{{ 1) }}"), "line 1: expected '}}', got ')'");
}

TEST(Jinja, RenderErrorsCarryTheirLine) {
  auto fails = [](const std::string& t) -> std::string {
    try {
      render_text(t);
    } catch (const RenderError& e) {
      return "line " + std::to_string(e.line) + (e.raised ? " raised: " : ": ") + e.message;
    }
    return "(rendered)";
  };
  EXPECT_EQ(fails("a\nb\n{{ raise_exception('no system role') }}"), "line 3 raised: no system role");
  EXPECT_EQ(fails("{% for m in [1] %}\n\n{{ m.x.y }}{% endfor %}"), "line 3: 'int object' has no attribute 'x' is undefined");
  EXPECT_EQ(fails("\n{{ 'a' + 1 }}"), "line 2: can only concatenate str (not \"int\") to str");
  EXPECT_EQ(fails("{{ nothing + 1 }}"), "line 1: 'nothing' is undefined");
  EXPECT_EQ(fails("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}"), "line 1: macro 'f' nested more than 64 calls deep");
}

// The whitespace rules transformers renders with, written out (no Python needed).
TEST(Jinja, TrimBlocksAndLstripBlocks) {
  EXPECT_EQ(render_text("  {% if true %}\n  x\n  {% endif %}\n  y"), "  x\n  y");
  EXPECT_EQ(render_text("{%- if true -%}  a  {%- endif -%}  b"), "ab");
  EXPECT_EQ(render_text("a {{- ' b ' -}} c"), "a b c");
  EXPECT_EQ(render_text("{{ x }}\n{{ x }}\n", {{"x", 1}}), "1\n1");  // one trailing newline dropped
  EXPECT_EQ(render_text("{% for m in ms %}\n{{ m }}\n{% endfor %}\n", {{"ms", {1, 2}}}), "1\n2\n");
  EXPECT_EQ(render_text("{% set ns = namespace(n=0) %}{% for i in range(4) %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}"), "6");
}
