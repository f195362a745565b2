"""Oracle for tests/test_layer_mla.cpp: transformers' DeepseekV3Attention (multi-head latent attention).

  hf_mla.py OUT
      For each case below: builds a tiny DeepseekV3Attention (fixed torch seed; every parameter random,
      the RMSNorm weights around 1 so that a missing norm weight shows), runs it in fp32 on a random
      input with a causal mask and HF's own rotary embedding, and writes raw little-endian float32 files
      OUT/<case>/<param name>.bin, x.bin [B, T, D], y.bin [B, T, D], cache_kv_nope.bin [B, T, r] and
      cache_k_rot.bin [B, T, dr] (what a DynamicCache holds after the forward), plus OUT/cases.json
      listing each case: name, config, B, T, rope_theta, param shapes, HF's softmax scaling and the
      softmax_scale strata must be given (0 = its default 1/sqrt(qk head dim)).
The C++ side never needs Python; this file is only the reference.
"""
import json
import os
import sys
import warnings

import torch
import transformers as T
from transformers.cache_utils import DynamicCache
from transformers.models.deepseek_v3 import modeling_deepseek_v3 as M

warnings.filterwarnings("ignore")
T.logging.set_verbosity_error()

COMMON = dict(hidden_size=48, num_attention_heads=4, num_key_value_heads=4, kv_lora_rank=32, qk_nope_head_dim=16,
              qk_rope_head_dim=8, v_head_dim=12, max_position_embeddings=256, attention_bias=False,
              num_hidden_layers=1, first_k_dense_replace=1, vocab_size=64, intermediate_size=64)

# (name, config overrides, rope_theta, yarn): DeepSeek-V2-Lite style (no q compression, rotate_half RoPE),
# DeepSeek-V3 style (q_lora_rank, interleaved RoPE), and V3 with a yarn rope_parameters block, whose only
# effect on the attention module is its softmax scaling (x mscale^2); strata gets it as softmax_scale. The
# position embeddings stay the default rotary of the same theta (strata has no yarn RoPE).
CASES = [
    ("v2_lite", dict(q_lora_rank=None, rope_interleave=False), 10000.0, False),
    ("v3", dict(q_lora_rank=24, rope_interleave=True), 5000.0, False),
    ("v3_yarn_scale", dict(q_lora_rank=16, rope_interleave=True), 10000.0, True),
]
B, TT = 2, 19


def rope_params(theta, yarn):
    if not yarn:
        return {"rope_type": "default", "rope_theta": theta}
    return {"rope_type": "yarn", "rope_theta": theta, "factor": 40.0, "mscale": 1.0, "mscale_all_dim": 1.0,
            "original_max_position_embeddings": 64, "beta_fast": 32.0, "beta_slow": 1.0}


def write(path, t):
    t.detach().to(torch.float32).contiguous().numpy().tofile(path)


def main(out):
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(1234)
    listing = []
    for name, over, theta, yarn in CASES:
        cfg = T.DeepseekV3Config(**COMMON, **over, rope_parameters=rope_params(theta, yarn))
        cfg._attn_implementation = "eager"
        attn = M.DeepseekV3Attention(cfg, layer_idx=0).eval()
        with torch.no_grad():
            for pname, p in attn.named_parameters():
                if pname.endswith("layernorm.weight"):
                    p.copy_(1.0 + 0.3 * torch.randn_like(p))
                else:
                    p.copy_(torch.randn_like(p) / p.shape[-1] ** 0.5)
        rot_cfg = T.DeepseekV3Config(**COMMON, **over, rope_parameters=rope_params(theta, False))
        rotary = M.DeepseekV3RotaryEmbedding(rot_cfg)
        x = torch.randn(B, TT, cfg.hidden_size)
        pos = torch.arange(TT)[None].expand(B, TT)
        cos, sin = rotary(x, pos)
        mask = torch.full((TT, TT), float("-inf")).triu(1)[None, None].expand(B, 1, TT, TT)
        cache = DynamicCache(config=cfg)
        with torch.no_grad():
            y, _ = attn(hidden_states=x, position_embeddings=(cos, sin), attention_mask=mask, cache=cache)
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        params = {}
        for pname, p in attn.named_parameters():
            write(os.path.join(d, pname + ".bin"), p)
            params[pname] = list(p.shape)
        write(os.path.join(d, "x.bin"), x)
        write(os.path.join(d, "y.bin"), y)
        layer = cache.layers[0]
        write(os.path.join(d, "cache_kv_nope.bin"), layer.keys)  # [B, 1, T, r]
        write(os.path.join(d, "cache_k_rot.bin"), layer.values)  # [B, 1, T, dr]
        listing.append({
            "name": name, "B": B, "T": TT, "rope_theta": theta, "params": params,
            "hf_scaling": float(attn.scaling),
            "softmax_scale": float(attn.scaling) if yarn else 0.0,
            "config": {k: getattr(cfg, k) for k in ("hidden_size", "num_attention_heads", "q_lora_rank", "kv_lora_rank",
                                                   "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim",
                                                   "rope_interleave")},
        })
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump(listing, f)


if __name__ == "__main__":
    main(sys.argv[1])
