"""Oracle for test_chat_template: renders each tokenizer_config.json fixture's chat template with
transformers' own apply_chat_template (the tokenizer loaded from that config, as for a model directory).

usage: chat_template_oracle.py CONVERSATIONS.json FIXTURE.json...
CONVERSATIONS.json: a list of conversations, each a list of {"role", "content"}.
Prints {fixture file name: [result per conversation x add_generation_prompt (false, true)]}, each result
{"ok": true, "text": ...} or {"ok": false, "error": ...} when the template refuses the conversation.
"""
import json
import os
import shutil
import sys
import tempfile

from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast


def main():
    conversations = json.load(open(sys.argv[1], encoding="utf-8"))
    out = {}
    for path in sys.argv[2:]:
        d = tempfile.mkdtemp()
        try:
            shutil.copy(path, os.path.join(d, "tokenizer_config.json"))
            # A one-token vocabulary: apply_chat_template(tokenize=False) never reads it.
            Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>")).save(os.path.join(d, "tokenizer.json"))
            tok = PreTrainedTokenizerFast.from_pretrained(d)
        finally:
            shutil.rmtree(d)
        results = []
        for conv in conversations:
            for add_generation_prompt in (False, True):
                try:
                    text = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=add_generation_prompt)
                    results.append({"ok": True, "text": text})
                except Exception as e:  # the template's raise_exception, or an error rendering it
                    results.append({"ok": False, "error": f"{type(e).__name__}: {e}"})
        out[os.path.basename(path)] = results
    json.dump(out, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
