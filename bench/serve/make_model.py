#!/usr/bin/env python3
"""The one model every peer serves: a random-weight Hugging Face Llama (~55M parameters), saved as an
HF directory, and the same weights as GGUF F32 and Q8_0 for llama.cpp.

  make_model.py OUT_DIR [--llama-quantize BIN]    (in the venv of python/requirements-bench.txt)

Writes (each only when missing or when the spec changed):
  OUT_DIR/hf/            config.json, model.safetensors, tokenizer.json (see below)
  OUT_DIR/model-f32.gguf bench/vs_hf.py's HF Llama -> GGUF writer (q/k rows permuted for ggml's RoPE)
  OUT_DIR/model-q8_0.gguf llama.cpp's own quantizer (llama-quantize ... Q8_0) when BIN is given,
                         else gguf-py's Q8_0 (the same block format: 32 weights, one f16 scale)
Prints OUT_DIR/model.json: {"hf", "gguf_f32", "gguf_q8_0", "vocab", "params", "max_context"}.

Weights are randomised as tests/hf_models.py does (decisive greedy choices). The vocabulary is a
placeholder, the same ids on every side: 0-2 <unk> <s> </s>, 3-258 the bytes, then one ordinary
token per id; prompts are sent as token ids (bench/serve/workloads.py), so only its size matters. The
HF tokenizer.json is a byte-level BPE with that vocabulary and no merges, so a server that
detokenizes (strata, transformers) turns every generated id into non-empty text.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
VOCAB = 32000
CONFIG = dict(vocab_size=VOCAB, hidden_size=512, intermediate_size=1408, num_hidden_layers=8, num_attention_heads=8,
              num_key_value_heads=2, rms_norm_eps=1e-5, max_position_embeddings=4096, bos_token_id=1,
              eos_token_id=2, tie_word_embeddings=False,
              rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
SEED = 1


def write_tokenizer(path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers import AddedToken
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for ch in alphabet:
        vocab[ch] = len(vocab)
    while len(vocab) < VOCAB:
        vocab[f"t{len(vocab)}"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True) for t in ("<unk>", "<s>", "</s>")])
    tok.save(path)
    with open(os.path.join(os.path.dirname(path), "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": False,
                   "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": CONFIG["max_position_embeddings"]},
                  f, indent=1)


def ensure_hf(out):
    d = os.path.join(out, "hf")
    spec = {"config": CONFIG, "seed": SEED}
    spec_path = os.path.join(d, "bench_spec.json")
    if os.path.exists(spec_path) and json.load(open(spec_path)) == spec:
        return d, False
    import torch
    import transformers as T
    T.logging.set_verbosity_error()
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from hf_models import randomise
    torch.manual_seed(SEED)
    model = T.LlamaForCausalLM(T.LlamaConfig(**CONFIG)).eval()
    randomise(model, SEED)
    n = sum(p.numel() for p in model.parameters())
    print(f"saving a random LlamaForCausalLM ({n / 1e6:.1f}M parameters) to {d}", file=sys.stderr)
    model.save_pretrained(d)
    write_tokenizer(os.path.join(d, "tokenizer.json"))
    with open(spec_path, "w") as f:
        json.dump(spec, f)
    return d, True


def quantize_q8_0_gguf_py(src, dst):
    """gguf-py's Q8_0 of every 2-D weight (as llama-quantize's Q8_0 type does; norms stay F32)."""
    import gguf
    import numpy as np
    r = gguf.GGUFReader(src)
    w = gguf.GGUFWriter(dst, "llama")
    for field in r.fields.values():
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue
        if field.name == "general.file_type":
            w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
            continue
        vt = field.types[0]
        if vt == gguf.GGUFValueType.ARRAY:
            sub = field.types[-1]
            vals = [field.parts[i].tobytes().decode() if sub == gguf.GGUFValueType.STRING else field.parts[i][0]
                    for i in field.data]
            w.add_key_value(field.name, vals, vt, sub_type=sub)
        else:
            v = field.parts[field.data[0]]
            w.add_key_value(field.name, v.tobytes().decode() if vt == gguf.GGUFValueType.STRING else v[0], vt)
    for t in r.tensors:
        a = np.asarray(t.data, dtype=np.float32).reshape(list(reversed(t.shape.tolist())))
        if a.ndim == 2 and a.shape[-1] % 32 == 0:
            q = gguf.quants.quantize(a, gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(t.name, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(t.name, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--llama-quantize", help="llama.cpp's llama-quantize (bench/serve/build_llama_server.sh)")
    ap.add_argument("--no-gguf", action="store_true", help="only the HF directory")
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    hf, changed = ensure_hf(a.out)
    f32 = os.path.join(a.out, "model-f32.gguf")
    q8 = os.path.join(a.out, "model-q8_0.gguf")
    if changed:
        for p in (f32, q8):
            if os.path.exists(p):
                os.remove(p)
    q8_by = None
    if not a.no_gguf:
        sys.path.insert(0, os.path.join(ROOT, "bench"))
        from vs_hf import write_llama_gguf
        if not os.path.exists(f32):
            write_llama_gguf(hf, f32 + ".tmp")
            os.replace(f32 + ".tmp", f32)
        if not os.path.exists(q8):
            if a.llama_quantize:
                subprocess.run([a.llama_quantize, f32, q8 + ".tmp", "Q8_0"], check=True, capture_output=True)
                q8_by = "llama-quantize"
            else:
                quantize_q8_0_gguf_py(f32, q8 + ".tmp")
                q8_by = "gguf-py"
            os.replace(q8 + ".tmp", q8)
    cfg = json.load(open(os.path.join(hf, "config.json")))
    import safetensors
    params = 0
    for fn in os.listdir(hf):
        if fn.endswith(".safetensors"):
            with safetensors.safe_open(os.path.join(hf, fn), "np") as f:
                for k in f.keys():
                    n = 1
                    for s in f.get_slice(k).get_shape():
                        n *= s
                    params += n
    info = {"hf": hf, "gguf_f32": None if a.no_gguf else f32, "gguf_q8_0": None if a.no_gguf else q8,
            "vocab": cfg["vocab_size"], "params": params, "max_context": cfg["max_position_embeddings"]}
    if q8_by:
        info["q8_0_by"] = q8_by
    with open(os.path.join(a.out, "model.json"), "w") as f:
        json.dump(info, f)
    print(json.dumps(info))


if __name__ == "__main__":
    main()
