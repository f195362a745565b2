#!/usr/bin/env python3
"""strata vs transformers (PyTorch CPU) and llama.cpp on the same imported Hugging Face models, in one run.

For each model: builds a random model of that architecture with transformers (no network; weights
randomised at scales that give decisive greedy choices, as tests/hf_models.py does) and saves it with
save_pretrained; then, at batch 1 with the same prompt and thread count, times
  strata       build/bench/bench_infer DIR (imports the HF directory on the fly; see bench_infer.cpp),
  transformers model(prompt) for the prefill, model.generate(greedy) for prefill + decode,
  llama.cpp    (Llama only) the directory converted to an F32 GGUF, run through llama-cpp-python,
each in its own process, and prints prefill and decode tokens/s with the ratios. All three decode
greedily from the same prompt; the table's last column counts how many of the generated tokens
agree with strata's (correctness before speed: every side computes in fp32).

  bench/vs_hf.sh [models...] [options]          # builds bench_infer, then runs this
  python bench/vs_hf.py [models...] [options]   # with the venv of python/requirements-bench.txt

Models: see MODELS below (default: all but llama_100m; `all` for every one).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB = 32000

# name -> (transformers class, config kwargs). Sizes are "tiny to small": big enough that the matrix
# products dominate (hidden 512, vocab 32000), small enough to run in minutes on 2 cores.
ROPE = {"rope_type": "default", "rope_theta": 10000.0}
MODELS = {
    "llama": ("LlamaForCausalLM", dict(
        vocab_size=VOCAB, hidden_size=512, intermediate_size=1408, num_hidden_layers=8, num_attention_heads=8,
        num_key_value_heads=2, rms_norm_eps=1e-5, max_position_embeddings=2048, rope_parameters=ROPE)),
    "llama_100m": ("LlamaForCausalLM", dict(
        vocab_size=VOCAB, hidden_size=768, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=12,
        num_key_value_heads=4, rms_norm_eps=1e-5, max_position_embeddings=2048, rope_parameters=ROPE)),
    "mixtral": ("MixtralForCausalLM", dict(
        vocab_size=VOCAB, hidden_size=512, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=8,
        num_key_value_heads=2, num_local_experts=8, num_experts_per_tok=2, max_position_embeddings=2048,
        rope_parameters=ROPE)),
    "mamba": ("MambaForCausalLM", dict(
        vocab_size=VOCAB, hidden_size=512, num_hidden_layers=8, state_size=16, conv_kernel=4, expand=2,
        time_step_rank=32, use_mambapy=False)),
    "mamba2": ("Mamba2ForCausalLM", dict(
        vocab_size=VOCAB, hidden_size=512, num_hidden_layers=8, state_size=64, num_heads=16, head_dim=64,
        n_groups=1, expand=2, chunk_size=64, conv_kernel=4)),
    "jamba": ("JambaForCausalLM", dict(
        vocab_size=VOCAB, hidden_size=512, intermediate_size=1024, num_hidden_layers=8, num_attention_heads=8,
        num_key_value_heads=2, num_experts=8, num_experts_per_tok=2, attn_layer_period=4, attn_layer_offset=2,
        expert_layer_period=2, expert_layer_offset=1, mamba_d_state=16, mamba_d_conv=4, mamba_expand=2,
        mamba_dt_rank=32, use_mamba_kernels=False)),
    "deepseek_v3": ("DeepseekV3ForCausalLM", dict(
        vocab_size=VOCAB, hidden_size=512, intermediate_size=1408, num_hidden_layers=8, num_attention_heads=8,
        num_key_value_heads=8, q_lora_rank=256, kv_lora_rank=128, qk_nope_head_dim=64, qk_rope_head_dim=32,
        v_head_dim=64, first_k_dense_replace=8, n_routed_experts=8, num_experts_per_tok=2, n_group=1, topk_group=1,
        max_position_embeddings=2048, rope_parameters=ROPE)),
}
DEFAULT_MODELS = [m for m in MODELS if m != "llama_100m"]
LLAMA_CPP_ARCHS = {"LlamaForCausalLM"}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", default=DEFAULT_MODELS,
                    help=f"of {', '.join(MODELS)} or 'all' (default: {' '.join(DEFAULT_MODELS)})")
    ap.add_argument("--bench-infer", default=os.path.join(ROOT, "build", "bench", "bench_infer"),
                    help="the strata executable (default: build/bench/bench_infer)")
    ap.add_argument("--python", default=sys.executable, help="python with torch, transformers, llama_cpp")
    ap.add_argument("--workdir", default=os.path.expanduser("~/.cache/strata/bench-hf"),
                    help="where the random models (and GGUF files) are kept between runs")
    ap.add_argument("--prompt-len", type=int, default=128, help="prompt tokens (prefill)")
    ap.add_argument("--decode-tokens", type=int, default=64, help="timed decode steps after the prefill")
    ap.add_argument("--warmup", type=int, default=4, help="decode steps of the untimed warm-up generation")
    ap.add_argument("--threads", type=int, default=0, help="threads for every side (default: os.cpu_count())")
    ap.add_argument("--repeat", type=int, default=1, help="runs per side; the median is reported")
    ap.add_argument("--only", action="append", choices=["strata", "transformers", "llama.cpp"],
                    help="run only these sides (repeatable)")
    ap.add_argument("--llama-flash-attn", action="store_true",
                    help="llama.cpp with flash attention (default: off, llama-cpp-python's default)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the weights and of the prompt")
    ap.add_argument("--json", metavar="FILE", help="also write every raw result to FILE")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per run")
    a = ap.parse_args(argv)
    if a.models == ["all"]:
        a.models = list(MODELS)
    for m in a.models:
        if m not in MODELS:
            ap.error(f"unknown model '{m}' (known: {', '.join(MODELS)})")
    return a


# ---------------------------------------------------------------------------------------------
# Models: random weights, saved once per spec.

def randomise(model, seed):
    """tests/hf_models.py's randomisation: every parameter random, including norms, A_log, D and the
    dt biases that transformers initialises to constants, at scales that keep activations O(1) and
    the logits spread out, so that greedy decoding has clear winners and the sides can be compared
    token by token."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from hf_models import randomise as r
    r(model, seed)


def ensure_model(a, name):
    """The saved model directory of `name` (created when missing or when its spec changed)."""
    cls_name, kwargs = MODELS[name]
    spec = {"class": cls_name, "config": kwargs, "seed": a.seed}
    d = os.path.join(a.workdir, name)
    spec_path = os.path.join(d, "bench_spec.json")
    if os.path.exists(spec_path):
        with open(spec_path) as f:
            if json.load(f) == spec:
                return d
    import torch
    import transformers as T
    T.logging.set_verbosity_error()
    torch.manual_seed(a.seed)
    cfg_cls = getattr(T, cls_name.replace("ForCausalLM", "Config"))
    model = getattr(T, cls_name)(cfg_cls(**kwargs)).eval()
    randomise(model, a.seed)
    print(f"{name}: saving a random {cls_name} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M "
          f"parameters) to {d}", file=sys.stderr)
    model.save_pretrained(d)
    with open(spec_path, "w") as f:
        json.dump(spec, f)
    gguf = os.path.join(d, "model-f32.gguf")
    if os.path.exists(gguf):
        os.remove(gguf)
    return d


# ---------------------------------------------------------------------------------------------
# llama.cpp: a minimal HF Llama -> GGUF (F32) writer.

def permute_for_ggml_rope(w, n_head):
    """llama.cpp's LLAMA rope rotates adjacent pairs (2i, 2i+1) of a head; HF's rotate_half rotates
    (i, i + d/2). convert_hf_to_gguf.py's LlamaModel.permute reorders the rows of q_proj (n_head) and
    k_proj (n_kv_head) so that the same pairs meet: new row 2i+j of a head = old row j*d/2 + i."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_llama_gguf(hf_dir, path):
    import gguf
    import numpy as np
    from safetensors.numpy import load_file
    with open(os.path.join(hf_dir, "config.json")) as f:
        c = json.load(f)
    sd = {}
    for fn in sorted(os.listdir(hf_dir)):
        if fn.endswith(".safetensors"):
            sd.update(load_file(os.path.join(hf_dir, fn)))
    D, L, H = c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"]
    KV = c.get("num_key_value_heads") or H
    hd = c.get("head_dim") or D // H
    V = c["vocab_size"]
    rope = c.get("rope_parameters") or {}
    if rope.get("rope_type", "default") != "default":
        raise SystemExit(f"{hf_dir}: the GGUF writer here handles default RoPE only")
    w = gguf.GGUFWriter(path, "llama")
    w.add_context_length(c.get("max_position_embeddings", 2048))
    w.add_embedding_length(D)
    w.add_block_count(L)
    w.add_feed_forward_length(c["intermediate_size"])
    w.add_head_count(H)
    w.add_head_count_kv(KV)
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_rope_dimension_count(hd)
    w.add_rope_freq_base(float(rope.get("rope_theta", c.get("rope_theta", 10000.0))))
    w.add_layer_norm_rms_eps(float(c["rms_norm_eps"]))
    w.add_vocab_size(V)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    # A placeholder SentencePiece vocabulary laid out like Llama 2's (unk, bos, eos, 256 byte tokens,
    # then ordinary pieces): the benchmark feeds token ids, so only its size and well-formedness matter.
    tokens, types = ["<unk>", "<s>", "</s>"], [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [gguf.TokenType.BYTE] * 256
    tokens += [f"t{i}" for i in range(len(tokens), V)]
    types += [gguf.TokenType.NORMAL] * (V - len(types))
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * V)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(False)

    def t(name, arr):
        w.add_tensor(name, np.ascontiguousarray(arr, dtype=np.float32))

    t("token_embd.weight", sd["model.embed_tokens.weight"])
    for i in range(L):
        p = f"model.layers.{i}."
        t(f"blk.{i}.attn_norm.weight", sd[p + "input_layernorm.weight"])
        t(f"blk.{i}.attn_q.weight", permute_for_ggml_rope(sd[p + "self_attn.q_proj.weight"], H))
        t(f"blk.{i}.attn_k.weight", permute_for_ggml_rope(sd[p + "self_attn.k_proj.weight"], KV))
        t(f"blk.{i}.attn_v.weight", sd[p + "self_attn.v_proj.weight"])
        t(f"blk.{i}.attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        t(f"blk.{i}.ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        t(f"blk.{i}.ffn_gate.weight", sd[p + "mlp.gate_proj.weight"])
        t(f"blk.{i}.ffn_up.weight", sd[p + "mlp.up_proj.weight"])
        t(f"blk.{i}.ffn_down.weight", sd[p + "mlp.down_proj.weight"])
    t("output_norm.weight", sd["model.norm.weight"])
    if "lm_head.weight" in sd and not c.get("tie_word_embeddings", False):
        t("output.weight", sd["lm_head.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def ensure_gguf(hf_dir):
    path = os.path.join(hf_dir, "model-f32.gguf")
    if not os.path.exists(path):
        tmp = path + ".tmp"
        write_llama_gguf(hf_dir, tmp)
        os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------------------------
# Workers: one process per measurement, each printing one JSON line.

def worker_transformers(w):
    """prefill = model(prompt, use_cache=True, logits_to_keep=1) (what generate's first call runs);
    decode = generate(max_new_tokens = N + 1) time minus that prefill time, for N tokens."""
    import torch
    import transformers as T
    T.logging.set_verbosity_error()
    torch.set_num_threads(w.threads)
    t0 = time.perf_counter()
    model = T.AutoModelForCausalLM.from_pretrained(w.dir, dtype=torch.float32).eval()
    load_s = time.perf_counter() - t0
    prompt = torch.tensor([w.ids], dtype=torch.long)
    mask = torch.ones_like(prompt)

    def generate(n):
        return model.generate(prompt, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                              eos_token_id=None, pad_token_id=0, use_cache=True)

    def prefill():
        t0 = time.perf_counter()
        model(input_ids=prompt, attention_mask=mask, use_cache=True, logits_to_keep=1)
        return time.perf_counter() - t0

    with torch.inference_mode():
        prefill()
        generate(w.warmup + 1)
        prefill_s = prefill()
        t0 = time.perf_counter()
        out = generate(w.decode_tokens + 1)
        gen_s = time.perf_counter() - t0
    return {"prefill_tokens_per_s": len(w.ids) / prefill_s,
            "decode_tokens_per_s": w.decode_tokens / max(gen_s - prefill_s, 1e-9),
            "params": sum(p.numel() for p in model.parameters()), "impl": "transformers", "threads": w.threads,
            "prefill_s": prefill_s, "generate_s": gen_s, "load_s": load_s, "torch": torch.__version__,
            "transformers": T.__version__, "tokens": out[0, len(w.ids):].tolist()}


def worker_llama_cpp(w):
    """prefill = llama_decode of the prompt in one batch (logits of the last position only);
    decode = N single-token llama_decode calls, greedy (argmax of the logits) in between."""
    import numpy as np
    import llama_cpp
    from llama_cpp import Llama
    gguf_path = ensure_gguf(w.dir)
    P, N = len(w.ids), w.decode_tokens
    n_ctx = P + max(N, w.warmup) + 16
    t0 = time.perf_counter()
    llm = Llama(model_path=gguf_path, n_ctx=n_ctx, n_batch=max(P, 512), n_ubatch=max(P, 512), n_threads=w.threads,
                n_threads_batch=w.threads, logits_all=False, verbose=False, seed=0, flash_attn=w.flash_attn,
                type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32)  # fp32 KV cache, as strata
    load_s = time.perf_counter() - t0
    nv = llm.n_vocab()

    def last_argmax():
        return int(np.argmax(np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(nv,))))

    def run(steps):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(w.ids)
        tok = last_argmax()
        prefill_s = time.perf_counter() - t0
        tokens = [tok]
        t0 = time.perf_counter()
        for _ in range(steps):
            llm.eval([tok])
            tok = last_argmax()
            tokens.append(tok)
        return prefill_s, time.perf_counter() - t0, tokens

    run(w.warmup)
    prefill_s, decode_s, tokens = run(N)
    return {"prefill_tokens_per_s": P / prefill_s, "decode_tokens_per_s": N / decode_s if N else 0.0,
            "impl": "llama.cpp", "threads": w.threads, "prefill_s": prefill_s, "decode_s": decode_s,
            "load_s": load_s, "llama_cpp_python": llama_cpp.__version__, "flash_attn": w.flash_attn,
            "tokens": tokens}


def worker_main(argv):
    ap = argparse.ArgumentParser(prog="vs_hf.py --worker")
    ap.add_argument("impl", choices=["transformers", "llama.cpp"])
    ap.add_argument("dir")
    ap.add_argument("--ids", required=True)
    ap.add_argument("--decode-tokens", type=int, required=True)
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--flash-attn", action="store_true")
    w = ap.parse_args(argv)
    w.ids = [int(x) for x in w.ids.split(",")]
    r = worker_transformers(w) if w.impl == "transformers" else worker_llama_cpp(w)
    print(json.dumps(r), flush=True)


# ---------------------------------------------------------------------------------------------
# Driver.

def run_json(cmd, env, timeout):
    """Runs cmd, echoes its stderr on failure, returns the last JSON line of its stdout."""
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        sys.stderr.write(p.stderr)
        raise RuntimeError(f"{' '.join(cmd[:3])} ... exited with {p.returncode}")
    for line in reversed(p.stdout.strip().splitlines()):
        if line.strip().startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"{' '.join(cmd[:3])} ... printed no JSON line:\n{p.stdout}")


def median_of(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def fmt_tps(x):
    return "-" if x is None else f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def fmt_ratio(s, t):
    return "-" if not s or not t else f"{s / t:.2f}x"


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def agreement(ref, other):
    """How many leading greedy tokens of `other` equal strata's."""
    n = 0
    for x, y in zip(ref, other):
        if x != y:
            break
        n += 1
    return n


def main(argv=None):
    a = parse_args(argv)
    sides = a.only or ["strata", "transformers", "llama.cpp"]
    threads = a.threads or os.cpu_count()
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    if "strata" in sides and not os.access(a.bench_infer, os.X_OK):
        sys.exit(f"{a.bench_infer} not found: build it first (bench/vs_hf.sh does: "
                 "cmake --build build --target bench_infer)")
    import numpy as np
    rng = np.random.default_rng(a.seed)
    ids = [int(x) for x in rng.integers(3, VOCAB, size=a.prompt_len)]
    ids_arg = ",".join(map(str, ids))
    results, mismatches = [], []
    for name in a.models:
        d = ensure_model(a, name)
        cls_name = MODELS[name][0]
        row = {"model": name, "class": cls_name, "dir": d, "strata": [], "transformers": [], "llama.cpp": []}
        worker = [a.python, os.path.abspath(__file__), "--worker"]
        wargs = [d, "--ids", ids_arg, "--decode-tokens", str(a.decode_tokens), "--warmup", str(a.warmup),
                 "--threads", str(threads)]
        for _ in range(a.repeat):
            if "strata" in sides:
                row["strata"].append(run_json([a.bench_infer, d, "--ids", ids_arg, "--decode-tokens",
                                               str(a.decode_tokens), "--warmup", str(a.warmup)], env, a.timeout))
            if "transformers" in sides:
                row["transformers"].append(run_json(worker + ["transformers"] + wargs, env, a.timeout))
            if "llama.cpp" in sides and cls_name in LLAMA_CPP_ARCHS:
                row["llama.cpp"].append(run_json(worker + ["llama.cpp"] + wargs +
                                                 (["--flash-attn"] if a.llama_flash_attn else []), env, a.timeout))
        ref = row["strata"][0]["tokens"] if row["strata"] else None
        row["agree"] = {}
        for side in ("transformers", "llama.cpp"):
            if ref and row[side]:
                n = agreement(ref, row[side][0]["tokens"])
                row["agree"][side] = n
                if n < len(ref):
                    mismatches.append(f"{name}: {side}'s greedy tokens leave strata's after {n} of {len(ref)}")
        results.append(row)
        print(f"{name}: " + " | ".join(
            f"{s} prefill {fmt_tps(median_of(row[s], 'prefill_tokens_per_s'))} decode "
            f"{fmt_tps(median_of(row[s], 'decode_tokens_per_s'))}" for s in sides if row[s]), file=sys.stderr)

    tv = next((r["transformers"][0].get("transformers") for r in results if r["transformers"]), "-")
    torch_v = next((r["transformers"][0].get("torch") for r in results if r["transformers"]), "-")
    lv = next((r["llama.cpp"][0].get("llama_cpp_python") for r in results if r["llama.cpp"]), "-")
    print()
    print(f"machine: {cpu_name()}, {os.cpu_count()} CPUs; threads {threads}; transformers {tv} (torch {torch_v}); "
          f"llama-cpp-python {lv}; {time.strftime('%Y-%m-%d')}; load average {os.getloadavg()[0]:.1f}")
    print(f"batch 1, fp32 everywhere; prompt {a.prompt_len} tokens, then {a.decode_tokens} greedy decode steps; "
          f"median of {a.repeat}; llama.cpp flash attention {'on' if a.llama_flash_attn else 'off'}")
    print()
    print("| model | params | prefill tok/s strata | transformers | llama.cpp | vs tf | vs llama.cpp | "
          "decode tok/s strata | transformers | llama.cpp | vs tf | vs llama.cpp | same greedy tokens |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        sp, tp, lp = (median_of(r[s], "prefill_tokens_per_s") for s in ("strata", "transformers", "llama.cpp"))
        sd, td, ld = (median_of(r[s], "decode_tokens_per_s") for s in ("strata", "transformers", "llama.cpp"))
        ps = next((x[0]["params"] for x in (r["strata"], r["transformers"]) if x), None)
        pt = r["transformers"][0]["params"] if r["transformers"] else None
        params = f"{ps / 1e6:.1f}M" if ps else "-"
        if ps and pt and ps != pt:
            params += f" (transformers {pt / 1e6:.1f}M!)"
        n_ref = len(r["strata"][0]["tokens"]) if r["strata"] else 0
        agree = ", ".join(f"{s} {n}/{n_ref}" for s, n in r["agree"].items()) or "-"
        print(f"| {r['model']} | {params} | {fmt_tps(sp)} | {fmt_tps(tp)} | {fmt_tps(lp)} | {fmt_ratio(sp, tp)} | "
              f"{fmt_ratio(sp, lp)} | {fmt_tps(sd)} | {fmt_tps(td)} | {fmt_tps(ld)} | {fmt_ratio(sd, td)} | "
              f"{fmt_ratio(sd, ld)} | {agree} |")
    print("\nratios = strata / other (above 1: strata is faster). Greedy tokens: how many of strata's "
          f"{a.decode_tokens + 1} generated tokens the other side reproduces before the first difference.")
    for m in mismatches:
        print(f"WARNING: {m}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"threads": threads, "args": vars(a), "prompt": ids, "results": results}, f, indent=1)
    return 1 if mismatches else 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker_main(sys.argv[2:])
    else:
        sys.exit(main())
