"""Oracle for test_jinja: renders template snippets with the Jinja environment transformers builds for
chat templates (transformers.utils.chat_template_utils: sandboxed, trim_blocks, lstrip_blocks,
loopcontrols, its tojson / raise_exception / strftime_now / namespace).

usage: jinja_oracle.py CASES.json   (a list of {"template": ..., "vars": {...}})
Prints a list of {"ok": true, "text": ...} or {"ok": false, "error": ...}, one per case.
"""
import json
import sys

from transformers.utils.chat_template_utils import _compile_jinja_template


def main():
    cases = json.load(open(sys.argv[1], encoding="utf-8"))
    out = []
    for case in cases:
        try:
            out.append({"ok": True, "text": _compile_jinja_template(case["template"]).render(**case["vars"])})
        except Exception as e:
            out.append({"ok": False, "error": f"{type(e).__name__}: {e}"})
    json.dump(out, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
