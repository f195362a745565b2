"""Oracle for tests/test_hf_layers.cpp: single transformers 5 modules, run in fp32 on CPU.

  hf_layers.py OUT
      For each case below: builds one module with a tiny config and a fixed torch seed, sets every
      parameter to random values (the ones that initialise to constants too: A_log, D, dt biases and
      norm weights, so that a mistake in how they are used shows), runs it on a random input x[B, T, D]
      (attention: causal mask, positions 0..T-1, HF's own rotary embedding), and writes raw little-endian
      float32 files OUT/<case>/<strata param name>.bin, x.bin and y.bin, plus OUT/cases.json listing
      each case: name, HF module, strata pattern char, the strata `model:` config section (JSON, which is
      YAML), B, T, the param shapes, and for RoPE cases HF's inv_freq and rotary dims.
Parameters are written under strata's names, relative to the block prefix. HF and strata share the
names except where HF fuses tensors: MoE experts (gate_up_proj [E, 2I, D] -> experts.{e}.gate_proj /
up_proj, down_proj [E, D, I] -> experts.{e}.down_proj) and Jamba's router (router.weight -> gate.weight).
The C++ side never needs Python; this file is only the reference.
"""
import json
import os
import sys
import warnings

import torch
import transformers as T
from transformers.models.jamba import modeling_jamba as JAMBA
from transformers.models.llama import modeling_llama as LLAMA
from transformers.models.mamba import modeling_mamba as MAMBA
from transformers.models.mamba2 import modeling_mamba2 as MAMBA2
from transformers.models.mixtral import modeling_mixtral as MIXTRAL
from transformers.models.stablelm import modeling_stablelm as STABLELM

warnings.filterwarnings("ignore")
T.logging.set_verbosity_error()

B = 2


def write(path, t):
    t.detach().to(torch.float32).contiguous().numpy().tofile(path)


def randomize(module, special=None):
    """Every parameter random: matrices ~ 1/sqrt(fan_in); norm weights around 1; `special` overrides."""
    special = special or {}
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name in special:
                p.copy_(special[name](p))
            elif name.endswith("norm.weight") or name.endswith("layernorm.weight"):
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
            elif p.dim() == 1:
                p.copy_(0.2 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) / p.shape[-1] ** 0.5)


def causal_mask(t):
    return torch.full((t, t), float("-inf")).triu(1)[None, None].expand(B, 1, t, t)


# ---- attention ----

def llama_attention(rope_parameters, t):
    cfg = T.LlamaConfig(hidden_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                        intermediate_size=64, max_position_embeddings=512, rope_parameters=rope_parameters,
                        attention_bias=False, num_hidden_layers=1, vocab_size=64)
    cfg._attn_implementation = "eager"
    attn = LLAMA.LlamaAttention(cfg, layer_idx=0).eval()
    randomize(attn)
    rotary = LLAMA.LlamaRotaryEmbedding(cfg)
    x = torch.randn(B, t, cfg.hidden_size)
    cos, sin = rotary(x, torch.arange(t)[None].expand(B, t))
    with torch.no_grad():
        y, _ = attn(hidden_states=x, position_embeddings=(cos, sin), attention_mask=causal_mask(t))
    rp = rope_parameters
    strata = {"d_model": 32, "pattern": "*",
              "attention": {"heads": 4, "kv_heads": 2, "head_dim": 16, "rope_theta": rp["rope_theta"],
                            "rope_type": rp["rope_type"]}}
    if rp["rope_type"] in ("linear", "llama3"):
        strata["attention"]["rope_factor"] = rp["factor"]
    if rp["rope_type"] == "llama3":
        strata["attention"].update(rope_low_freq_factor=rp["low_freq_factor"],
                                   rope_high_freq_factor=rp["high_freq_factor"],
                                   rope_original_max_positions=rp["original_max_position_embeddings"])
    extra = {"inv_freq": rotary.inv_freq.tolist(), "rope_dims": 16}
    return "LlamaAttention", "*", strata, dict(attn.named_parameters()), x, y, extra


def stablelm_partial_attention(t):
    # Partial rotary: RoPE on the first rope_dims = 0.5 * head_dim channels of each head.
    cfg = T.StableLmConfig(hidden_size=32, num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
                           max_position_embeddings=512, use_qkv_bias=False, qk_layernorm=False,
                           rope_parameters={"rope_type": "default", "rope_theta": 1000.0, "partial_rotary_factor": 0.5},
                           num_hidden_layers=1, vocab_size=64)
    cfg._attn_implementation = "eager"
    attn = STABLELM.StableLmAttention(cfg, layer_idx=0).eval()
    randomize(attn)
    rotary = STABLELM.StableLmRotaryEmbedding(cfg)
    x = torch.randn(B, t, cfg.hidden_size)
    cos, sin = rotary(x, torch.arange(t)[None].expand(B, t))
    with torch.no_grad():
        y, _ = attn(hidden_states=x, position_embeddings=(cos, sin), attention_mask=causal_mask(t))
    assert attn.rotary_ndims == 4
    strata = {"d_model": 32, "pattern": "*",
              "attention": {"heads": 4, "kv_heads": 2, "head_dim": 8, "rope_theta": 1000.0, "rope_dims": 4}}
    extra = {"inv_freq": rotary.inv_freq.tolist(), "rope_dims": 4}
    return "StableLmAttention", "*", strata, dict(attn.named_parameters()), x, y, extra


def jamba_config(**over):
    base = dict(hidden_size=16, num_attention_heads=4, num_key_value_heads=2, intermediate_size=24, num_experts=4,
                num_experts_per_tok=2, mamba_d_state=8, mamba_d_conv=4, mamba_expand=2, mamba_dt_rank=3,
                mamba_conv_bias=True, mamba_proj_bias=False, rms_norm_eps=1e-6, num_hidden_layers=2,
                vocab_size=64, use_mamba_kernels=False)
    base.update(over)
    cfg = T.JambaConfig(**base)
    cfg._attn_implementation = "eager"
    return cfg


def jamba_attention(t):
    cfg = jamba_config()
    attn = JAMBA.JambaAttention(cfg, layer_idx=0).eval()
    randomize(attn)
    x = torch.randn(B, t, cfg.hidden_size)
    with torch.no_grad():
        y, _ = attn(hidden_states=x, attention_mask=causal_mask(t))
    strata = {"d_model": 16, "pattern": "*", "attention": {"heads": 4, "kv_heads": 2, "rope": False}}
    return "JambaAttention", "*", strata, dict(attn.named_parameters()), x, y, {}


# ---- feed-forward ----

def llama_mlp(t):
    cfg = T.LlamaConfig(hidden_size=32, intermediate_size=48, num_attention_heads=4, mlp_bias=False, hidden_act="silu")
    mlp = LLAMA.LlamaMLP(cfg).eval()
    randomize(mlp)
    x = torch.randn(B, t, 32)
    with torch.no_grad():
        y = mlp(x)
    strata = {"d_model": 32, "pattern": "-", "mlp": {"hidden": 48}}
    return "LlamaMLP", "-", strata, dict(mlp.named_parameters()), x, y, {}


def split_experts(params, router_name):
    """HF's fused expert tensors -> strata's per-expert names."""
    out = {"gate.weight": params[router_name]}
    gu, down = params["experts.gate_up_proj"], params["experts.down_proj"]
    inter = gu.shape[1] // 2
    for e in range(gu.shape[0]):
        out[f"experts.{e}.gate_proj.weight"] = gu[e, :inter]  # chunk(2, dim=-1): gate first, then up
        out[f"experts.{e}.up_proj.weight"] = gu[e, inter:]
        out[f"experts.{e}.down_proj.weight"] = down[e]
    return out


def mixtral_moe(t):
    cfg = T.MixtralConfig(hidden_size=16, intermediate_size=24, num_local_experts=6, num_experts_per_tok=2,
                          num_attention_heads=4, router_jitter_noise=0.0)
    moe = MIXTRAL.MixtralSparseMoeBlock(cfg).eval()
    # Router logits O(1) so that the top-k picks and gates vary from token to token.
    randomize(moe, {"gate.weight": lambda p: torch.randn_like(p)})
    x = torch.randn(B, t, 16)
    with torch.no_grad():
        y = moe(x)
    strata = {"d_model": 16, "pattern": "E", "moe": {"experts": 6, "top_k": 2, "hidden": 24, "renorm": True}}
    return "MixtralSparseMoeBlock", "E", strata, split_experts(dict(moe.named_parameters()), "gate.weight"), x, y, {}


def jamba_moe(t):
    cfg = jamba_config(num_experts=5, num_experts_per_tok=2)
    moe = JAMBA.JambaSparseMoeBlock(cfg).eval()
    randomize(moe, {"router.weight": lambda p: torch.randn_like(p)})
    x = torch.randn(B, t, 16)
    with torch.no_grad():
        y = moe(x)
    strata = {"d_model": 16, "pattern": "E", "moe": {"experts": 5, "top_k": 2, "hidden": 24, "renorm": False}}
    return "JambaSparseMoeBlock", "E", strata, split_experts(dict(moe.named_parameters()), "router.weight"), x, y, {}


# ---- mixers ----

def ssm_special(state_size_of_row):
    """A_log near log(1..S) (or per head), D in [0.5, 1.5], dt biases with softplus in ~0.05..0.7."""
    return {
        "A_log": lambda p: torch.log(state_size_of_row(p)) + 0.2 * torch.randn_like(p),
        "D": lambda p: 0.5 + torch.rand_like(p),
        "dt_proj.bias": lambda p: -3.0 + 3.0 * torch.rand_like(p),
        "dt_bias": lambda p: -3.0 + 3.0 * torch.rand_like(p),
    }


def mamba1_a(p):
    return torch.arange(1, p.shape[-1] + 1, dtype=torch.float32).expand_as(p)


def mamba_mixer(t, use_bias, use_conv_bias):
    cfg = T.MambaConfig(hidden_size=16, state_size=6, expand=2, conv_kernel=4, time_step_rank=3, use_bias=use_bias,
                        use_conv_bias=use_conv_bias, hidden_act="silu", num_hidden_layers=1, vocab_size=64)
    mixer = MAMBA.MambaMixer(cfg, layer_idx=0).eval()
    randomize(mixer, ssm_special(mamba1_a))
    x = torch.randn(B, t, 16)
    with torch.no_grad():
        y = mixer(x)
    strata = {"d_model": 16, "pattern": "M",
              "mamba": {"version": 1, "d_state": 6, "d_conv": 4, "expand": 2, "dt_rank": 3, "bias": use_bias,
                        "conv_bias": use_conv_bias}}
    return "MambaMixer", "M", strata, dict(mixer.named_parameters()), x, y, {}


def mamba2_mixer(t, n_groups, use_bias, chunk):
    cfg = T.Mamba2Config(hidden_size=32, state_size=8, expand=2, head_dim=8, num_heads=8, n_groups=n_groups,
                         conv_kernel=4, chunk_size=chunk, use_bias=use_bias, use_conv_bias=True,
                         layer_norm_epsilon=1e-5, hidden_act="silu", num_hidden_layers=1, vocab_size=64)
    mixer = MAMBA2.Mamba2Mixer(cfg, layer_idx=0).eval()
    randomize(mixer, ssm_special(lambda p: torch.arange(1, p.shape[0] + 1, dtype=torch.float32)))
    x = torch.randn(B, t, 32)
    with torch.no_grad():
        y = mixer(x)
    strata = {"d_model": 32, "pattern": "M", "norm_eps": 1e-5,
              "mamba": {"version": 2, "d_state": 8, "d_conv": 4, "expand": 2, "head_dim": 8, "ngroups": n_groups,
                        "chunk": chunk, "bias": use_bias, "conv_bias": True}}
    return "Mamba2Mixer", "M", strata, dict(mixer.named_parameters()), x, y, {"group_size": 64 // n_groups}


def jamba_mamba_mixer(t):
    cfg = jamba_config()
    mixer = JAMBA.JambaMambaMixer(cfg, layer_idx=1).eval()
    randomize(mixer, ssm_special(mamba1_a))
    x = torch.randn(B, t, 16)
    with torch.no_grad():
        y = mixer(x)
    strata = {"d_model": 16, "pattern": "M", "norm_eps": 1e-6,
              "mamba": {"version": 1, "d_state": 8, "d_conv": 4, "expand": 2, "dt_rank": 3, "bias": False,
                        "conv_bias": True, "inner_norms": True}}
    return "JambaMambaMixer", "M", strata, dict(mixer.named_parameters()), x, y, {}


CASES = [
    ("llama_rope_default", lambda: llama_attention({"rope_type": "default", "rope_theta": 10000.0}, 40)),
    ("llama_rope_linear", lambda: llama_attention({"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0}, 40)),
    # original_max 256 with head_dim 16 and theta 1e4: wavelengths 6.3 .. 2e4, so some are kept (< 64),
    # some blended, some divided (> 256).
    ("llama_rope_llama3", lambda: llama_attention(
        {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
         "original_max_position_embeddings": 256}, 40)),
    ("stablelm_partial_rotary", lambda: stablelm_partial_attention(33)),
    ("jamba_attention_no_rope", lambda: jamba_attention(29)),
    ("llama_mlp", lambda: llama_mlp(9)),
    ("mixtral_moe", lambda: mixtral_moe(23)),
    ("jamba_moe", lambda: jamba_moe(23)),
    ("mamba_mixer", lambda: mamba_mixer(27, False, True)),
    ("mamba_mixer_bias_noconvbias", lambda: mamba_mixer(27, True, False)),
    ("mamba2_mixer_groups2", lambda: mamba2_mixer(37, 2, False, 8)),
    ("mamba2_mixer_groups4_bias", lambda: mamba2_mixer(21, 4, True, 16)),
    ("jamba_mamba_mixer", lambda: jamba_mamba_mixer(31)),
]


def main(out):
    os.makedirs(out, exist_ok=True)
    listing = []
    for i, (name, build) in enumerate(CASES):
        torch.manual_seed(1000 + i)
        module, kind, strata, params, x, y, extra = build()
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        shapes = {}
        for pname, p in params.items():
            write(os.path.join(d, pname + ".bin"), p)
            shapes[pname] = list(p.shape)
        write(os.path.join(d, "x.bin"), x)
        write(os.path.join(d, "y.bin"), y)
        listing.append({"name": name, "module": module, "kind": kind, "strata": strata, "B": x.shape[0],
                        "T": x.shape[1], "params": shapes, "y_absmax": float(y.abs().max()), **extra})
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump(listing, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
