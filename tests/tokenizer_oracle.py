"""Oracle for tests/test_tokenizer.cpp: the Hugging Face `tokenizers` library itself.

  build OUTDIR CORPUS   trains small byte-level BPE tokenizers in the styles of GPT-2, Llama-3 and
                        Qwen2 (and a few variants) on part of CORPUS; writes OUTDIR/<style>.json.
                        No network, no hub.
  run REQUEST RESPONSE  REQUEST is JSON {"tokenizer": path, "encode": [[text, add_special], ...],
                        "decode": [[ids, skip_special], ...], "pre_tokenize": [text, ...],
                        "file": path (encoded whole and line by line), "time": bool}; RESPONSE gets
                        the same keys with tokenizers' answers.
"""
import json
import sys
import time

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
          r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
         r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# Extra training text so that merges exist for non-ASCII text too (accents, CJK, emoji).
EXTRA = ("café naïve résumé Ångström façade über straße ÉCOLE " * 20 + "日本語のテキスト 中文文本 한국어 " * 20 +
         "😀 👍🏽 👨‍👩‍👧 🇫🇷 " * 10 + "1234567890 3.14159 2024-01-01 " * 10)


def trainer(vocab, specials=()):
    return trainers.BpeTrainer(vocab_size=vocab, special_tokens=list(specials), show_progress=False,
                               initial_alphabet=pre_tokenizers.ByteLevel.alphabet())


def build(outdir, corpus):
    text = open(corpus, encoding="utf-8").read()[:400000] + EXTRA
    out = {}

    # GPT-2: ByteLevel pre-tokenizer with its regex, <|endoftext|> trained into the vocabulary.
    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    t.train_from_iterator([text], trainer=trainer(1500, ["<|endoftext|>"]))
    t.post_processor = processors.ByteLevel(trim_offsets=False)
    out["gpt2"] = t

    # Llama-3: Split(regex) + ByteLevel(use_regex=false), ignore_merges, specials after the vocabulary, BOS template.
    t = Tokenizer(models.BPE(ignore_merges=True))
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    t.decoder = decoders.ByteLevel()
    t.train_from_iterator([text], trainer=trainer(2000))
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    t.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    bos = t.token_to_id("<|begin_of_text|>")
    t.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A $B:1",
                                      special_tokens=[("<|begin_of_text|>", bos)])])
    out["llama3"] = t

    # Qwen2: NFC, its regex (single digits), specials and plain added tokens after the vocabulary.
    t = Tokenizer(models.BPE())
    t.normalizer = normalizers.NFC()
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    t.decoder = decoders.ByteLevel()
    t.train_from_iterator([text], trainer=trainer(1800))
    t.add_special_tokens([AddedToken(s, special=True, normalized=False)
                          for s in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]])
    t.add_tokens([AddedToken(s, special=False, normalized=False) for s in ["<tool_call>", "</tool_call>"]])
    t.post_processor = processors.ByteLevel(trim_offsets=False)
    out["qwen2"] = t

    # Variant: NFD, ByteLevel with add_prefix_space, a template with prefix and suffix, and added tokens
    # exercising single_word / lstrip / rstrip / normalized.
    t = Tokenizer(models.BPE())
    t.normalizer = normalizers.Sequence([normalizers.NFD()])
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    t.decoder = decoders.Sequence([decoders.ByteLevel()])
    t.train_from_iterator([text], trainer=trainer(1200, ["<s>", "</s>"]))
    t.add_special_tokens([AddedToken("[MASK]", special=True, lstrip=True, rstrip=True, normalized=False)])
    t.add_tokens([AddedToken("hello world", single_word=True, normalized=False),
                  AddedToken("café", normalized=True),
                  AddedToken("ing", single_word=True, normalized=True),
                  AddedToken("<sep>", rstrip=True, normalized=False)])
    t.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", t.token_to_id("<s>")), ("</s>", t.token_to_id("</s>"))])
    out["variant"] = t

    # Without the byte alphabet: characters missing from the vocabulary become <unk> (fused or not) or vanish.
    ascii_text = text[:100000]
    for name, unk, fuse in [("unk_fused", "<unk>", True), ("unk_plain", "<unk>", False), ("no_unk", None, False)]:
        t = Tokenizer(models.BPE(unk_token=unk, fuse_unk=fuse))
        t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        t.decoder = decoders.ByteLevel()
        t.train_from_iterator([ascii_text], trainer=trainers.BpeTrainer(
            vocab_size=400, special_tokens=["<unk>"], show_progress=False))
        out[name] = t

    for name, t in out.items():
        j = json.loads(t.to_str())
        if name == "gpt2":  # the older merges format real GPT-2 files use: "a b" strings
            j["model"]["merges"] = [" ".join(m) for m in j["model"]["merges"]]
        with open(f"{outdir}/{name}.json", "w", encoding="utf-8") as f:
            json.dump(j, f, ensure_ascii=False)
    # Pre-tokenizers only (a one-token model): Split behaviors, invert, String patterns, regex classes.
    splits = {
        "split_isolated": pre_tokenizers.Split(Regex(r"\s+|\d+"), behavior="isolated"),
        "split_removed": pre_tokenizers.Split(Regex(r"\s+|\d+"), behavior="removed"),
        "split_prev": pre_tokenizers.Split(Regex(r"\s+|\d+"), behavior="merged_with_previous"),
        "split_next": pre_tokenizers.Split(Regex(r"\s+|\d+"), behavior="merged_with_next"),
        "split_contig": pre_tokenizers.Split(Regex(r"\s|\d"), behavior="contiguous"),
        "split_invert": pre_tokenizers.Split(Regex(r"\p{L}+"), behavior="removed", invert=True),
        "split_invert_prev": pre_tokenizers.Split(Regex(r"\p{L}+"), behavior="merged_with_previous", invert=True),
        "split_string": pre_tokenizers.Split("--", behavior="isolated"),
        "split_string_regexy": pre_tokenizers.Split(".*", behavior="removed"),
        "split_classes": pre_tokenizers.Split(Regex(r"\s+|\S+?(?=\s|$)|[\s\d]"), behavior="isolated"),
        "split_word": pre_tokenizers.Split(Regex(r"\w+|\W"), behavior="isolated"),
        "split_lines": pre_tokenizers.Split(Regex(r"^.|.$|(?m:x.y)"), behavior="isolated"),
        "split_empty": pre_tokenizers.Split(Regex(r"x*"), behavior="isolated"),
        "split_gpt2": pre_tokenizers.ByteLevel(add_prefix_space=False),
        "split_llama3": pre_tokenizers.Split(Regex(LLAMA3), behavior="isolated"),
        "split_qwen2": pre_tokenizers.Split(Regex(QWEN2), behavior="isolated"),
    }
    for name, p in splits.items():
        t = Tokenizer(models.BPE(vocab={"a": 0}, merges=[]))
        t.pre_tokenizer = p
        t.decoder = decoders.ByteLevel()
        t.save(f"{outdir}/{name}.json")


def run(request, response):
    with open(request, encoding="utf-8") as f:
        req = json.load(f)
    t = Tokenizer.from_file(req["tokenizer"])
    res = {}
    if "encode" in req:
        res["encode"] = [t.encode(s, add_special_tokens=a).ids for s, a in req["encode"]]
    if "decode" in req:
        res["decode"] = [t.decode(ids, skip_special_tokens=k) for ids, k in req["decode"]]
    if "pre_tokenize" in req:
        res["pre_tokenize"] = [[p for p, _ in t.pre_tokenizer.pre_tokenize_str(s)] for s in req["pre_tokenize"]]
    if "file" in req:
        text = open(req["file"], encoding="utf-8").read()
        t0 = time.perf_counter()
        res["file_whole"] = t.encode(text).ids
        res["file_ms"] = (time.perf_counter() - t0) * 1e3
        res["file_lines"] = [e.ids for e in t.encode_batch(text.split("\n"))]
    with open(response, "w", encoding="utf-8") as f:
        json.dump(res, f)


if __name__ == "__main__":
    if sys.argv[1] == "build":
        build(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "run":
        run(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown command {sys.argv[1]}")
