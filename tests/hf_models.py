"""Tiny random Hugging Face models for tests/test_hf_interop.cpp (the oracle side of import/export parity).

  hf_models.py make OUT ARCH [ARCH ...]
      For each architecture: builds a tiny random model with transformers (fixed seed; parameters that
      initialise to constants, such as norms, A_log, D and dt biases, are randomised so that mapping
      mistakes show), saves it with save_pretrained (safetensors) plus a small byte-level BPE
      tokenizer.json into OUT/ARCH/model, and writes the references:
        OUT/ARCH/ids.bin     int32 token ids [T]
        OUT/ARCH/logits.bin  float32 logits [T, V] of transformers' forward over ids
        OUT/ARCH/gen.bin     int32: 32 greedy tokens after the prompt ids[:P] (transformers generate)
        OUT/ARCH/ref.json    {"T", "V", "P", "class", "prompt_text", "prompt_text_ids", "gen_text_ids"}
  hf_models.py reload OUT ARCH=EXPORT_DIR [ARCH=EXPORT_DIR ...]
      Loads each EXPORT_DIR with AutoModelForCausalLM.from_pretrained and prints one JSON line per
      architecture: the class loaded, the loading report (missing / unexpected / mismatched keys),
      the max abs difference of its logits from OUT/ARCH/logits.bin, and whether its tokenizer
      (AutoTokenizer) encodes the prompt as the original did.
The C++ side never needs Python; this file is only the reference.
"""
import json
import math
import os
import sys
import warnings

import numpy as np
import torch
import transformers as T

warnings.filterwarnings("ignore")
T.logging.set_verbosity_error()

V = 512
ARCHS = {
    "llama": lambda: (T.LlamaForCausalLM, T.LlamaConfig(
        vocab_size=V, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, rms_norm_eps=1e-5, rope_parameters={"rope_type": "default", "rope_theta": 5000.0})),
    # Tied embeddings, explicit head_dim != hidden / heads, and llama3 RoPE scaling.
    "llama3": lambda: (T.LlamaForCausalLM, T.LlamaConfig(
        vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=24, tie_word_embeddings=True, max_position_embeddings=256,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 16})),
    "mixtral": lambda: (T.MixtralForCausalLM, T.MixtralConfig(
        vocab_size=V, hidden_size=64, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0})),
    "mamba": lambda: (T.MambaForCausalLM, T.MambaConfig(
        vocab_size=V, hidden_size=64, num_hidden_layers=2, state_size=8, conv_kernel=4, expand=2,
        time_step_rank=6)),
    "mamba2": lambda: (T.Mamba2ForCausalLM, T.Mamba2Config(
        vocab_size=V, hidden_size=64, num_hidden_layers=2, state_size=8, num_heads=8, head_dim=16, n_groups=2,
        expand=2, chunk_size=8, conv_kernel=4)),
    "jamba": lambda: (T.JambaForCausalLM, T.JambaConfig(
        vocab_size=V, hidden_size=64, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, num_experts=4, num_experts_per_tok=2, attn_layer_period=2, attn_layer_offset=1,
        expert_layer_period=2, expert_layer_offset=0, mamba_d_state=8, mamba_d_conv=4, mamba_expand=2,
        mamba_dt_rank=6)),
    "deepseek_v3": lambda: (T.DeepseekV3ForCausalLM, T.DeepseekV3Config(
        vocab_size=V, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, q_lora_rank=32, kv_lora_rank=16, qk_nope_head_dim=16, qk_rope_head_dim=8,
        v_head_dim=12, first_k_dense_replace=2, n_routed_experts=4, num_experts_per_tok=2, n_group=1, topk_group=1,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0})),
    # No q compression (a plain q_proj) and the non-interleaved RoPE layout.
    "deepseek_v3_noq": lambda: (T.DeepseekV3ForCausalLM, T.DeepseekV3Config(
        vocab_size=V, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, q_lora_rank=None, kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=8,
        v_head_dim=16, first_k_dense_replace=2, n_routed_experts=4, num_experts_per_tok=2, n_group=1, topk_group=1,
        rope_interleave=False, rope_parameters={"rope_type": "default", "rope_theta": 10000.0})),
}
T_IDS, P_GEN, N_GEN = 21, 6, 32
CORPUS = ("the quick brown fox jumps over the lazy dog. a state space model reads a sequence one token at a time; "
          "attention looks at every token before it. mixtures of experts route each token to a few experts. ") * 8
PROMPT_TEXT = "the lazy fox reads"


def randomise(model, seed):
    """Every parameter random, at scales that keep activations O(1) and logits spread out (so greedy
    decoding has clear winners), including those transformers initialises to constants."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if "norm" in name or "layernorm" in name:
                p.copy_(0.6 + 0.8 * torch.rand(p.shape, generator=g))
            elif leaf == "A_log":
                p.copy_(torch.log(1 + 7 * torch.rand(p.shape, generator=g)))
            elif leaf == "D":
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            elif leaf == "dt_bias" or name.endswith("dt_proj.bias"):
                dt = torch.exp(torch.rand(p.shape, generator=g) * (math.log(0.2) - math.log(0.005)) + math.log(0.005))
                p.copy_(dt + torch.log(-torch.expm1(-dt)))
            elif "embed" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            elif p.dim() >= 2:
                fan_in = p.shape[-1] if "conv1d" not in name else p.shape[-1]
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))
            else:  # biases
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


def tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers, processors
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>"], show_progress=False)
    tok.train_from_iterator([CORPUS], trainer=trainer)
    return tok


def write(path, arr, dtype):
    np.ascontiguousarray(arr, dtype=dtype).tofile(path)


def make(out, arch, tok):
    torch.manual_seed(1234)
    cls, cfg = ARCHS[arch]()
    model = cls(cfg).eval()
    randomise(model, 4321)
    d = os.path.join(out, arch)
    os.makedirs(d, exist_ok=True)
    model.save_pretrained(os.path.join(d, "model"))
    tok.save(os.path.join(d, "model", "tokenizer.json"))
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(0, V, (1, T_IDS), generator=g)
    with torch.no_grad():
        logits = model(ids).logits[0].float().numpy()
        # Greedy decoding that never stops at EOS, so that exactly N_GEN tokens come out.
        gen = model.generate(ids[:, :P_GEN], max_new_tokens=N_GEN, min_new_tokens=N_GEN, do_sample=False,
                             eos_token_id=None, pad_token_id=0)[0, P_GEN:].numpy()
        text_ids = tok.encode(PROMPT_TEXT).ids
        gen_text = model.generate(torch.tensor([text_ids]), max_new_tokens=N_GEN, min_new_tokens=N_GEN,
                                  do_sample=False, eos_token_id=None, pad_token_id=0)[0, len(text_ids):].tolist()
    write(os.path.join(d, "ids.bin"), ids[0].numpy(), np.int32)
    write(os.path.join(d, "logits.bin"), logits, np.float32)
    write(os.path.join(d, "gen.bin"), gen, np.int32)
    ref = {"T": T_IDS, "V": V, "P": P_GEN, "N": N_GEN, "class": cls.__name__, "prompt_text": PROMPT_TEXT,
           "prompt_text_ids": text_ids, "gen_text_ids": gen_text,
           "gen_text": tok.decode(gen_text)}
    with open(os.path.join(d, "ref.json"), "w") as f:
        json.dump(ref, f)


def reload(out, arch, export_dir):
    d = os.path.join(out, arch)
    ids = np.fromfile(os.path.join(d, "ids.bin"), dtype=np.int32)
    want = np.fromfile(os.path.join(d, "logits.bin"), dtype=np.float32).reshape(len(ids), -1)
    model, info = T.AutoModelForCausalLM.from_pretrained(export_dir, output_loading_info=True)
    model.eval()
    with torch.no_grad():
        got = model(torch.tensor(ids[None].astype(np.int64))).logits[0].float().numpy()
    report = {"class": type(model).__name__,
              "missing": sorted(info.get("missing_keys", [])),
              "unexpected": sorted(info.get("unexpected_keys", [])),
              "mismatched": [str(m) for m in info.get("mismatched_keys", [])],
              "max_abs_diff": float(np.abs(got - want).max()) if got.shape == want.shape else None,
              "shape": list(got.shape)}
    if os.path.exists(os.path.join(export_dir, "tokenizer.json")):
        tok = T.AutoTokenizer.from_pretrained(export_dir)
        report["tokenizer_ok"] = tok(PROMPT_TEXT)["input_ids"] == \
            json.load(open(os.path.join(d, "ref.json")))["prompt_text_ids"]
    report["arch"] = arch
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    torch.set_num_threads(2)
    if sys.argv[1] == "make":
        tok = tokenizer()
        for a in sys.argv[3:]:
            make(sys.argv[2], a, tok)
    elif sys.argv[1] == "reload":
        for pair in sys.argv[3:]:
            arch, export_dir = pair.split("=", 1)
            reload(sys.argv[2], arch, export_dir)
    else:
        sys.exit("usage: hf_models.py make OUT ARCH... | reload OUT ARCH=EXPORT_DIR...")
