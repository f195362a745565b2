"""A tiny reader for the YAML subset the experiment configs use (PyYAML is not a dependency).

Supported: block mappings by indentation, flow mappings ``{a: 1, b: {c: 2}}``, flow lists
``[1, 2]``, ``#`` comments, and scalars (int, float incl. ``3.0e-3``, true/false, null, 'single'
and "double" quoted strings, plain strings). Block lists, anchors, multi-line strings and other
YAML features are refused with an error naming the line, not silently misread.
"""
from __future__ import annotations

import re

_INT = re.compile(r"^[-+]?(0|[1-9][0-9_]*)$")
_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9][0-9_]*(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")


class YamlError(ValueError):
    pass


def scalar(text: str):
    """A YAML 1.2 core-schema scalar."""
    t = text.strip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "'\"":
        body = t[1:-1]
        return body.replace("''", "'") if t[0] == "'" else bytes(body, "utf-8").decode("unicode_escape")
    if t in ("", "~", "null", "Null", "NULL"):
        return None
    if t in ("true", "True", "TRUE"):
        return True
    if t in ("false", "False", "FALSE"):
        return False
    if _INT.match(t):
        return int(t.replace("_", ""))
    if _FLOAT.match(t) and any(c.isdigit() for c in t):
        return float(t.replace("_", ""))
    if t in (".inf", "+.inf"):
        return float("inf")
    if t == "-.inf":
        return float("-inf")
    if t == ".nan":
        return float("nan")
    return t


def _strip_comment(line: str) -> str:
    """Drops a ``#`` comment (one at the start or after whitespace, outside quotes)."""
    quote = None
    for i, c in enumerate(line):
        if quote:
            if c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i]
    return line


def _split_top(text: str, sep: str):
    """Splits at `sep` outside brackets and quotes."""
    parts, depth, quote, cur = [], 0, None, []
    for c in text:
        if quote:
            cur.append(c)
            if c == quote:
                quote = None
            continue
        if c in "'\"":
            quote = c
        elif c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
        if c == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    parts.append("".join(cur))
    return parts


def _key_value(item: str, where: str):
    """'key: value' -> (key, value text); the separator is the first ': ' (or a trailing ':')."""
    m = re.match(r"^\s*('[^']*'|\"[^\"]*\"|[^:'\"]+?)\s*:(\s+(.*))?$", item, re.S)
    if not m:
        raise YamlError(f"{where}: expected 'key: value', got {item.strip()!r}")
    return scalar(m.group(1)), (m.group(3) or "")


def flow(text: str, where: str):
    """A value: a flow mapping, a flow list or a scalar."""
    t = text.strip()
    if t.startswith("{"):
        if not t.endswith("}"):
            raise YamlError(f"{where}: unterminated flow mapping {t!r}")
        out = {}
        body = t[1:-1].strip()
        if body:
            for item in _split_top(body, ","):
                if not item.strip():
                    continue
                k, v = _key_value(item, where)
                out[k] = flow(v, where)
        return out
    if t.startswith("["):
        if not t.endswith("]"):
            raise YamlError(f"{where}: unterminated flow list {t!r}")
        body = t[1:-1].strip()
        return [flow(x, where) for x in _split_top(body, ",") if x.strip()] if body else []
    if t[:1] in ("&", "!", "|", ">") or (t[:1] == "*" and re.match(r"^\*[A-Za-z0-9_]+$", t)):
        raise YamlError(f"{where}: YAML feature not supported by this reader: {t!r}")
    return scalar(t)


def loads(text: str, source: str = "<string>"):
    lines = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = _strip_comment(raw).rstrip()
        if not line.strip() or line.strip() in ("---", "..."):
            continue
        if "\t" in line[: len(line) - len(line.lstrip())]:
            raise YamlError(f"{source}:{n}: tabs in indentation")
        lines.append((n, len(line) - len(line.lstrip()), line.strip()))

    pos = 0

    def block(indent: int):
        nonlocal pos
        out = {}
        while pos < len(lines):
            n, ind, body = lines[pos]
            where = f"{source}:{n}"
            if ind < indent:
                break
            if ind > indent:
                raise YamlError(f"{where}: unexpected indentation")
            if body.startswith("- "):
                raise YamlError(f"{where}: block lists are not supported by this reader")
            k, v = _key_value(body, where)
            if k in out:
                raise YamlError(f"{where}: duplicate key {k!r}")
            pos += 1
            if v.strip():
                out[k] = flow(v, where)
            elif pos < len(lines) and lines[pos][1] > indent:
                out[k] = block(lines[pos][1])
            else:
                out[k] = None
        return out

    result = block(lines[0][1]) if lines else {}
    if pos != len(lines):
        raise YamlError(f"{source}:{lines[pos][0]}: bad indentation")
    return result


def load(path: str):
    with open(path, encoding="utf-8") as f:
        return loads(f.read(), path)
