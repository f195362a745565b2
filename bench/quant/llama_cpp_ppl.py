"""llama.cpp's Q8_0 / Q4_0 on the same model as bench/quant/ppl.sh, through PyPI's gguf and llama-cpp-python.

  llama_cpp_ppl.py HF_DIR TEXT [--max-tokens 32768] [--context 256] [--out DIR]

HF_DIR: a byte-level LlamaForCausalLM (vocab_size 256, e.g. a strata model exported with
`strata export hf`). Writes F32, Q8_0 and Q4_0 GGUF files with gguf's own quantisers (the blocks'
linear weights quantised, token embedding / output and norms kept F32: the same selection as
strata quantize), then scores the text as strata eval-ppl does (byte ids, non-overlapping windows of
--context tokens, each predicting its next byte; no BOS) with llama-cpp-python, and prints a
markdown table. The GGUF vocabulary is 256 byte tokens <0x00>..<0xFF> (SentencePiece byte tokens);
ids are fed directly, so llama.cpp's tokenizer is never used.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
from safetensors.numpy import load_file
import gguf


def permute(w, n_head, n_head_kv=None):
    # convert_hf_to_gguf.py's LlamaModel.permute: HF's rotate-half q/k rows back to llama.cpp's order.
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(hf_dir, path, qtype):
    cfg = json.load(open(os.path.join(hf_dir, "config.json")))
    assert cfg["vocab_size"] == 256, "a byte-level model (vocab_size 256) is expected"
    tensors = {}
    for f in sorted(os.listdir(hf_dir)):
        if f.endswith(".safetensors"):
            tensors.update(load_file(os.path.join(hf_dir, f)))
    H, KV, D = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["hidden_size"]
    hd = cfg.get("head_dim") or D // H
    w = gguf.GGUFWriter(path, "llama")
    w.add_context_length(cfg.get("max_position_embeddings", 4096))
    w.add_embedding_length(D)
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(H)
    w.add_head_count_kv(KV)
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_rope_dimension_count(hd)
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_freq_base((cfg.get("rope_parameters") or {}).get("rope_theta", cfg.get("rope_theta", 10000.0)))
    w.add_file_type({"F32": 0, "Q8_0": 7, "Q4_0": 2}[qtype])
    w.add_tokenizer_model("llama")
    w.add_token_list([f"<0x{i:02X}>".encode() for i in range(256)])
    w.add_token_scores([0.0] * 256)
    w.add_token_types([gguf.TokenType.BYTE] * 256)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    per_layer = {"input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
                 "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
                 "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
                 "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
                 "mlp.down_proj.weight": "ffn_down.weight"}
    for name, t in tensors.items():
        t = t.astype(np.float32)
        if name in names:
            out = names[name]
        else:
            parts = name.split(".")
            assert parts[0] == "model" and parts[1] == "layers", name
            out = f"blk.{parts[2]}." + per_layer[".".join(parts[3:])]
            if name.endswith("q_proj.weight"):
                t = permute(t, H, H)
            elif name.endswith("k_proj.weight"):
                t = permute(t, H, KV)
        quantise = qtype != "F32" and t.ndim == 2 and out.startswith("blk.")
        if quantise:
            qt = getattr(gguf.GGMLQuantizationType, qtype)
            w.add_tensor(out, gguf.quants.quantize(t, qt), raw_dtype=qt)
        else:
            w.add_tensor(out, t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def ppl(path, ids, T):
    from llama_cpp import Llama
    llm = Llama(model_path=path, n_ctx=T, n_batch=T, logits_all=True, n_threads=1, verbose=False)
    windows = (len(ids) - 1) // T
    nll = 0.0
    for w in range(windows):
        x = ids[w * T:(w + 1) * T]
        y = ids[w * T + 1:(w + 1) * T + 1]
        llm.reset()
        llm.eval(x)
        logits = np.asarray(llm.scores[:T], dtype=np.float64)
        m = logits.max(axis=1, keepdims=True)
        lse = (m[:, 0] + np.log(np.exp(logits - m).sum(axis=1)))
        nll += float((lse - logits[np.arange(T), y]).sum())
    return math.exp(nll / (windows * T)), windows * T


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("hf_dir")
    ap.add_argument("text")
    ap.add_argument("--max-tokens", type=int, default=32768)
    ap.add_argument("--context", type=int, default=256)
    ap.add_argument("--out", default="/tmp/strata_quant_bench")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    ids = list(open(a.text, "rb").read()[:a.max_tokens])
    print("| model | llama.cpp weights | ppl | delta | delta % | file MB |")
    print("|---|---|---|---|---|---|")
    base = None
    for q in ("F32", "Q8_0", "Q4_0"):
        path = os.path.join(a.out, f"model.{q}.gguf")
        write_gguf(a.hf_dir, path, q)
        p, n = ppl(path, ids, a.context)
        base = base or p
        print(f"| {os.path.basename(os.path.normpath(a.hf_dir))} | {q} | {p:.4f} | {p - base:+.4f} | "
              f"{100 * (p - base) / base:+.2f}% | {os.path.getsize(path) / 1e6:.2f} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
