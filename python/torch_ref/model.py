"""The strata architecture in plain PyTorch eager: the peer a researcher would otherwise write.

Model = embedding -> layers (each x + block(rmsnorm(x)), one per pattern character) -> final
RMSNorm -> head tied to the embedding (lm_head when tie_embeddings is false). Blocks:
  '*' attention: q/k/v/o without bias, RoPE (Hugging Face rotate_half, rope_type default / linear /
      llama3, partial over rope_dims channels, or none with attention.rope = False), GQA,
      F.scaled_dot_product_attention(is_causal=True); decode with a preallocated KV cache.
  '*' with attention.kind mla: transformers' DeepseekV3Attention (multi-head latent attention) with
      eager attention; decode caches the normalised latent and the rotated rope key.
  '-' SwiGLU MLP (Llama): down(silu(gate(x)) * up(x)).
  'E' MoE as Hugging Face Mixtral's eager loop: softmax router, top-k, renormalised gates, each
      expert runs over the tokens routed to it (torch.where + index_add_), Switch aux loss, and
      an always-on shared expert (DeepSeek / Qwen-MoE) with moe.shared_experts.
  'M' mamba.version 2: mamba_ssm's Mamba2 module (in_proj [z, xBC, dt] -> depthwise causal conv1d
      + silu -> SSD -> gated RMSNorm -> out_proj) with the SSD in plain torch ops as
      ssd_minimal.py's chunked ssd_minimal_discrete; decode as Mamba2.step's torch path.
  'M' mamba.version 1: mamba_ssm's Mamba (mamba_simple.py, the path without causal_conv1d /
      fused kernels) with selective_scan_ref (a Python loop over T); decode as Mamba.step.
      mamba.inner_norms adds Jamba's RMSNorms on dt, B and C (JambaMambaMixer); mamba.selective
      False makes dt, B and C learned constants (strata's non-selective, S4D-like baseline).
  attention.window > 0 (gqa and mla): each query sees only its last `window` positions.
Parameter names and shapes are strata's (Hugging Face style), so a strata checkpoint's tensors
load as they are (torch_ref/grads.py: bench/vs_pytorch.py --check and
tests/test_grad_parity_torch.cpp use it to confirm both sides compute the same function and the same
gradients). Every op follows its parameters' dtype, so the model also runs in fp64 (the arbiter of
those checks). No mamba_ssm, causal_conv1d, triton or einops: torch only.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import AttentionConfig, ModelConfig, resolve


def _at_least_fp32(dtype):
    return torch.promote_types(dtype, torch.float32)


def _up(x):
    """x in fp32, or kept in fp64 (mamba_ssm's references upcast to fp32; fp64 runs stay fp64)."""
    return x.to(_at_least_fp32(x.dtype))


# ----------------------------------------------------------------------------------------------
# Norms


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


class RMSNormGated(nn.Module):
    """mamba_ssm.ops.triton.layernorm_gated.RMSNorm with norm_before_gate=False, written as its
    rmsnorm_ref: y = rms_norm(x * silu(z)) * w, the rms taken over groups of `group_size`."""

    def __init__(self, d: int, eps: float, group_size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps
        self.group_size = group_size

    def forward(self, x, z):
        x = x * F.silu(z)
        if self.group_size == x.shape[-1]:
            rstd = torch.rsqrt(x.square().mean(dim=-1, keepdim=True) + self.eps)
            return x * rstd * self.weight
        xg = x.unflatten(-1, (-1, self.group_size))
        rstd = torch.rsqrt(xg.square().mean(dim=-1, keepdim=True) + self.eps)
        return (xg * rstd).flatten(-2) * self.weight


# ----------------------------------------------------------------------------------------------
# Attention


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rope_inv_freq(a: AttentionConfig, rot: int) -> torch.Tensor:
    """transformers' modeling_rope_utils (rope_type default / linear / llama3) for `rot` rotated
    channels, in fp32 as transformers computes it (the table is part of the function's definition)."""
    inv = 1.0 / (a.rope_theta ** (torch.arange(0, rot, 2, dtype=torch.int64).float() / rot))
    if a.rope_type == "default":
        return inv
    if a.rope_type == "linear":
        return inv / a.rope_factor
    if a.rope_type == "llama3":  # _compute_llama3_parameters
        factor, lo, hi = a.rope_factor, a.rope_low_freq_factor, a.rope_high_freq_factor
        old = a.rope_original_max_positions
        low_freq_wavelen, high_freq_wavelen = old / lo, old / hi
        wavelen = 2 * math.pi / inv
        inv_llama = torch.where(wavelen > low_freq_wavelen, inv / factor, inv)
        smooth = (old / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * inv_llama / factor + smooth * inv_llama
        is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
        return torch.where(is_medium, smoothed, inv_llama)
    raise ValueError(f"attention.rope_type '{a.rope_type}': the PyTorch peer knows default, linear, llama3")


def rope_cos_sin(inv_freq, pos0: int, T: int, dtype):
    """cos, sin [T, rot] of positions pos0.. (HF's cat(freqs, freqs)), computed in `dtype` (fp32 as HF;
    fp64 when the whole model runs in fp64, so that only the fp32 frequency table stays rounded)."""
    pos = torch.arange(pos0, pos0 + T, dtype=dtype)
    freqs = torch.outer(pos, inv_freq.to(dtype))
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def causal_mask(Tq: int, Tk: int, window: int = 0):
    """[Tq, Tk] True where a query (the last Tq of Tk positions) may attend: itself and earlier keys,
    only its last `window` positions when window > 0 (sliding-window attention)."""
    ones = torch.ones(Tq, Tk, dtype=torch.bool)
    mask = ones.tril(Tk - Tq)
    return mask & ~ones.tril(Tk - Tq - window) if window > 0 else mask


def causal_attention(q, k, v, scale, window: int = 0):
    """Eager softmax(q k^T * scale + causal mask) v over [B, H, T, d] (queries at the end of the keys)."""
    Tq, Tk = q.shape[-2], k.shape[-2]
    s = (q @ k.transpose(-1, -2)) * scale
    s = s.masked_fill(~causal_mask(Tq, Tk, window), -torch.inf)
    return torch.softmax(s, dim=-1) @ v


class Attention(nn.Module):
    """Llama attention; RoPE (rotate_half) on the first rope_dims channels of each head (HF partial
    rotary), or none at all with attention.rope = False (Jamba)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        a = cfg.attention
        D = cfg.d_model
        self.Hq, self.Hkv, self.hd = a.heads, a.kv_heads, a.head_dim
        self.rot = (a.rope_dims or self.hd) if a.rope else 0
        self.window = a.window
        self.q_proj = nn.Linear(D, self.Hq * self.hd, bias=False)
        self.k_proj = nn.Linear(D, self.Hkv * self.hd, bias=False)
        self.v_proj = nn.Linear(D, self.Hkv * self.hd, bias=False)
        self.o_proj = nn.Linear(self.Hq * self.hd, D, bias=False)
        inv_freq = rope_inv_freq(a, self.rot) if self.rot else torch.zeros(0)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def rope(self, q, k, pos0: int, T: int):
        # HF LlamaRotaryEmbedding + apply_rotary_pos_emb (partial: the rest passes through): q, k [B, H, T, hd]
        if self.rot == 0:
            return q, k
        cos, sin = rope_cos_sin(self.inv_freq, pos0, T, q.dtype)
        r = self.rot

        def apply(x):
            xr, xp = x[..., :r], x[..., r:]
            return torch.cat((xr * cos + rotate_half(xr) * sin, xp), dim=-1)

        return apply(q), apply(k)

    def _qkv(self, x, pos0):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.Hq, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.Hkv, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.Hkv, self.hd).transpose(1, 2)
        q, k = self.rope(q, k, pos0, T)
        return q, k, v

    def forward(self, x, cache=None):
        B, T, _ = x.shape
        q, k, v = self._qkv(x, 0)
        if cache is not None:
            cache["k"][:, :, :T] = k
            cache["v"][:, :, :T] = v
        if self.window > 0:
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(T, T, self.window),
                                               enable_gqa=self.Hq != self.Hkv)
        else:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.Hq != self.Hkv)
        return self.o_proj(o.transpose(1, 2).reshape(B, T, self.Hq * self.hd))

    def allocate_cache(self, B, max_T):
        shape = (B, self.Hkv, max_T, self.hd)
        return {"k": torch.zeros(shape), "v": torch.zeros(shape)}

    def step(self, x, cache, pos: int):
        # x [B, 1, D]: the query at `pos` sees the cached keys 0..pos.
        B = x.shape[0]
        q, k, v = self._qkv(x, pos)
        cache["k"][:, :, pos : pos + 1] = k
        cache["v"][:, :, pos : pos + 1] = v
        first = max(0, pos + 1 - self.window) if self.window > 0 else 0  # sliding window: the last `window` keys
        o = F.scaled_dot_product_attention(q, cache["k"][:, :, first : pos + 1], cache["v"][:, :, first : pos + 1],
                                           enable_gqa=self.Hq != self.Hkv)
        return self.o_proj(o.transpose(1, 2).reshape(B, 1, self.Hq * self.hd))


class LatentAttention(nn.Module):
    """Multi-head latent attention (attention.kind: mla) as transformers' DeepseekV3Attention with
    eager attention: optional query compression (q_a_proj -> RMSNorm -> q_b_proj), one latent
    c = RMSNorm(x Wkva^T[:r]) and one RoPE key shared by all heads, both expanded by kv_b_proj.
    The two RMSNorms are DeepseekV3RMSNorm(rank) with its default eps 1e-6 (HF does not pass
    rms_norm_eps to them). RoPE over the qk_rope_head_dim channels only (DeepseekV3Config sets
    head_dim = qk_rope_head_dim), interleaved pairs when rope_interleave. Decode caches c and
    rope(kr) per position (HF's compressed cache) and expands them again at every step."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        a = cfg.attention
        D = cfg.d_model
        self.H, self.dn, self.dr, self.dv, self.r = a.heads, a.qk_nope_head_dim, a.qk_rope_head_dim, a.v_head_dim, \
            a.kv_lora_rank
        self.dqk = self.dn + self.dr
        self.q_lora = a.q_lora_rank
        self.interleave = a.rope_interleave
        self.scale = a.softmax_scale if a.softmax_scale > 0 else self.dqk ** -0.5
        self.window = a.window
        if self.q_lora > 0:
            self.q_a_proj = nn.Linear(D, self.q_lora, bias=False)
            self.q_a_layernorm = RMSNorm(self.q_lora, 1e-6)
            self.q_b_proj = nn.Linear(self.q_lora, self.H * self.dqk, bias=False)
        else:
            self.q_proj = nn.Linear(D, self.H * self.dqk, bias=False)
        self.kv_a_proj_with_mqa = nn.Linear(D, self.r + self.dr, bias=False)
        self.kv_a_layernorm = RMSNorm(self.r, 1e-6)
        self.kv_b_proj = nn.Linear(self.r, self.H * (self.dn + self.dv), bias=False)
        self.o_proj = nn.Linear(self.H * self.dv, D, bias=False)
        self.register_buffer("inv_freq", rope_inv_freq(a, self.dr), persistent=False)

    def _rope(self, x, pos0):
        """x [B, h, T, dr] -> rotated, in HF's output order (interleave: evens, then odds)."""
        cos, sin = rope_cos_sin(self.inv_freq, pos0, x.shape[-2], x.dtype)
        if not self.interleave:
            return x * cos + rotate_half(x) * sin
        cos, sin = cos[..., : self.dr // 2], sin[..., : self.dr // 2]  # apply_rotary_pos_emb_interleave
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)

    def _project(self, x, pos0):
        """x [B, T, D] -> q [B, H, T, dqk] (rope part rotated), latent c [B, T, r], rope(kr) [B, 1, T, dr]."""
        B, T, _ = x.shape
        q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x))) if self.q_lora > 0 else self.q_proj(x)
        q = q.view(B, T, self.H, self.dqk).transpose(1, 2)
        q_nope, q_rot = torch.split(q, [self.dn, self.dr], dim=-1)
        c, kr = torch.split(self.kv_a_proj_with_mqa(x), [self.r, self.dr], dim=-1)
        c = self.kv_a_layernorm(c)
        q = torch.cat((q_nope, self._rope(q_rot, pos0)), dim=-1)
        return q, c, self._rope(kr.view(B, 1, T, self.dr), pos0)

    def _attend(self, q, c, kr):
        """q [B, H, Tq, dqk] over the latents c [B, Tk, r] and keys kr [B, 1, Tk, dr] -> [B, Tq, D]."""
        B, Tk, _ = c.shape
        kv = self.kv_b_proj(c).view(B, Tk, self.H, self.dn + self.dv).transpose(1, 2)
        k_nope, v = torch.split(kv, [self.dn, self.dv], dim=-1)
        k = torch.cat((k_nope, kr.expand(-1, self.H, -1, -1)), dim=-1)
        o = causal_attention(q, k, v, self.scale, self.window)
        return self.o_proj(o.transpose(1, 2).reshape(B, q.shape[2], self.H * self.dv))

    def forward(self, x, cache=None):
        T = x.shape[1]
        q, c, kr = self._project(x, 0)
        if cache is not None:
            cache["c"][:, :T] = c
            cache["kr"][:, :, :T] = kr
        return self._attend(q, c, kr)

    def allocate_cache(self, B, max_T):
        return {"c": torch.zeros(B, max_T, self.r), "kr": torch.zeros(B, 1, max_T, self.dr)}

    def step(self, x, cache, pos: int):
        q, c, kr = self._project(x, pos)
        cache["c"][:, pos : pos + 1] = c
        cache["kr"][:, :, pos : pos + 1] = kr
        return self._attend(q, cache["c"][:, : pos + 1], cache["kr"][:, :, : pos + 1])


# ----------------------------------------------------------------------------------------------
# MLP / MoE


class MLP(nn.Module):
    def __init__(self, D: int, H: int):
        super().__init__()
        self.gate_proj = nn.Linear(D, H, bias=False)
        self.up_proj = nn.Linear(D, H, bias=False)
        self.down_proj = nn.Linear(H, D, bias=False)

    def forward(self, x, cache=None):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))

    def step(self, x, cache, pos):
        return self.forward(x)


class MoE(nn.Module):
    """Mixtral's sparse MoE block (HF MixtralSparseMoeBlock eager loop) + optional shared expert
    + the Switch load-balancing loss of this layer (strata's moe_aux_loss), scaled by aux_loss."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        m = cfg.moe
        D = cfg.d_model
        self.E, self.k, self.renorm, self.coef = m.experts, m.top_k, m.renorm, m.aux_loss
        self.gate = nn.Linear(D, self.E, bias=False)
        self.experts = nn.ModuleList(MLP(D, m.hidden) for _ in range(self.E))
        self.shared_expert = MLP(D, m.shared_experts * m.hidden) if m.shared_experts > 0 else None
        self.aux = None
        self.route_margin = None

    def forward(self, x, cache=None):
        shape = x.shape
        h = x.reshape(-1, shape[-1])
        router_logits = self.gate(h)
        probs = F.softmax(router_logits, dim=1, dtype=_at_least_fp32(h.dtype))
        routing_weights, selected_experts = torch.topk(probs, self.k, dim=-1)
        if self.k < self.E:  # how close a token came to another routing (for the parity checks)
            top = torch.topk(probs.detach(), self.k + 1, dim=-1).values
            self.route_margin = (top[:, self.k - 1] - top[:, self.k]).min().item()
        if self.renorm:
            routing_weights = routing_weights / routing_weights.sum(dim=-1, keepdim=True)
        routing_weights = routing_weights.to(h.dtype)
        final = torch.zeros_like(h)
        expert_mask = F.one_hot(selected_experts, num_classes=self.E).permute(2, 1, 0)
        for e in range(self.E):
            idx, top_x = torch.where(expert_mask[e])
            if top_x.numel() == 0:
                continue
            current = self.experts[e](h[top_x]) * routing_weights[top_x, idx, None]
            final.index_add_(0, top_x, current.to(h.dtype))
        if self.shared_expert is not None:
            final = final + self.shared_expert(h)
        if self.training and self.coef > 0:
            # Switch Transformer: E * sum_e f_e * P_e, f_e = share of the N*k assignments (no grad).
            f = expert_mask.sum(dim=(1, 2)).to(probs.dtype).detach() / (h.shape[0] * self.k)
            self.aux = self.coef * self.E * (f * probs.mean(dim=0)).sum()
        else:
            self.aux = None
        return final.view(shape)

    def step(self, x, cache, pos):
        return self.forward(x)


# ----------------------------------------------------------------------------------------------
# Mamba-2


def segsum(x):
    """ssd_minimal.py's stable segment sum (einops.repeat written as expand)."""
    T = x.size(-1)
    x = x[..., None].expand(*x.shape, T)
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool), diagonal=-1)
    x = x.masked_fill(~mask, 0)
    x_segsum = torch.cumsum(x, dim=-2)
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool), diagonal=0)
    return x_segsum.masked_fill(~mask, -torch.inf)


def ssd_minimal_discrete(X, A, B, C, block_len, initial_states=None):
    """ssd_minimal.py (Listing 1 of the Mamba-2 paper), rearranges written as view/permute.
    X [b, l, h, p], A [b, l, h], B/C [b, l, g, n] -> Y [b, l, h, p], final state [b, h, p, n].
    With g == 1 these are the reference einsums; for g > 1 B/C are first expanded to one group per
    head (the reference sums over g, which only means anything for g == 1)."""
    b, l, h, p = X.shape
    if B.shape[2] != 1:
        B = B.repeat_interleave(h // B.shape[2], dim=2)
        C = C.repeat_interleave(h // C.shape[2], dim=2)
    c = l // block_len
    X, A, B, C = [x.reshape(b, c, block_len, *x.shape[2:]) for x in (X, A, B, C)]
    A = A.permute(0, 3, 1, 2)  # b h c l
    A_cumsum = torch.cumsum(A, dim=-1)

    # 1. intra-chunk (diagonal blocks)
    L = torch.exp(segsum(A))
    if B.shape[3] == 1:
        Y_diag = torch.einsum("bclgn,bcsgn,bhcls,bcshp->bclhp", C, B, L, X)
    else:
        Y_diag = torch.einsum("bclhn,bcshn,bhcls,bcshp->bclhp", C, B, L, X)
    # 2. states at the end of each chunk
    decay_states = torch.exp(A_cumsum[:, :, :, -1:] - A_cumsum)
    if B.shape[3] == 1:
        states = torch.einsum("bclgn,bhcl,bclhp->bcghpn", B, decay_states, X).squeeze(2)
    else:
        states = torch.einsum("bclhn,bhcl,bclhp->bchpn", B, decay_states, X)
    # 3. inter-chunk recurrence
    if initial_states is None:
        initial_states = torch.zeros_like(states[:, :1])
    states = torch.cat([initial_states, states], dim=1)
    decay_chunk = torch.exp(segsum(F.pad(A_cumsum[:, :, :, -1], (1, 0))))
    new_states = torch.einsum("bhzc,bchpn->bzhpn", decay_chunk, states)
    states, final_state = new_states[:, :-1], new_states[:, -1]
    # 4. state -> output
    state_decay_out = torch.exp(A_cumsum)
    if C.shape[3] == 1:
        Y_off = torch.einsum("bclgn,bchpn,bhcl->bclhp", C, states, state_decay_out)
    else:
        Y_off = torch.einsum("bclhn,bchpn,bhcl->bclhp", C, states, state_decay_out)
    Y = (Y_diag + Y_off).reshape(b, c * block_len, h, p)
    return Y, final_state


class Mamba2(nn.Module):
    def __init__(self, cfg: ModelConfig, n_layers: int):
        super().__init__()
        m = cfg.mamba
        if not m.selective:
            raise ValueError("mamba.selective: false is a Mamba-1 (mamba.version: 1) setting, as in strata")
        D = cfg.d_model
        self.d_inner = m.expand * D
        self.P, self.N, self.G, self.K = m.head_dim, m.d_state, m.ngroups, m.d_conv
        self.H = self.d_inner // self.P
        self.chunk = m.chunk
        self.conv_dim = self.d_inner + 2 * self.G * self.N
        # Order: [z, x, B, C, dt]
        self.in_proj = nn.Linear(D, 2 * self.d_inner + 2 * self.G * self.N + self.H, bias=m.bias)
        self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, self.K, groups=self.conv_dim, padding=self.K - 1,
                                bias=m.conv_bias)
        dt = torch.exp(torch.rand(self.H) * (math.log(m.dt_max) - math.log(m.dt_min)) + math.log(m.dt_min))
        dt = torch.clamp(dt, min=m.dt_init_floor)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.log(torch.empty(self.H).uniform_(1, 16)))
        self.D = nn.Parameter(torch.ones(self.H))
        self.norm = RMSNormGated(self.d_inner, cfg.norm_eps, self.d_inner // self.G)  # HF: layer_norm_epsilon
        self.out_proj = nn.Linear(self.d_inner, D, bias=m.bias)
        with torch.no_grad():
            self.out_proj.weight /= math.sqrt(n_layers)

    def forward(self, u, cache=None):
        Bsz, T, _ = u.shape
        zxbcdt = self.in_proj(u)
        A = -torch.exp(_up(self.A_log))
        z, xBC, dt = torch.split(zxbcdt, [self.d_inner, self.conv_dim, self.H], dim=-1)
        if cache is not None:
            xBC_t = xBC.transpose(1, 2)
            cache["conv"].copy_(F.pad(xBC_t, (self.K - xBC_t.shape[-1], 0)))
        xBC = F.silu(self.conv1d(xBC.transpose(1, 2))[..., :T].transpose(1, 2))
        x, B, C = torch.split(xBC, [self.d_inner, self.G * self.N, self.G * self.N], dim=-1)
        x = x.reshape(Bsz, T, self.H, self.P)
        B = B.reshape(Bsz, T, self.G, self.N)
        C = C.reshape(Bsz, T, self.G, self.N)
        # mamba_chunk_scan_combined(x, dt, A, B, C, chunk, D, dt_bias, dt_softplus=True) in torch ops
        dt = F.softplus(dt + self.dt_bias)
        pad = (-T) % self.chunk  # zero padding at the end: y of the first T and the final state unchanged
        X, Adt, Bp, Cp = x * dt[..., None], A * dt, B, C
        if pad:
            X = F.pad(X, (0, 0, 0, 0, 0, pad))
            Adt = F.pad(Adt, (0, 0, 0, pad))
            Bp = F.pad(Bp, (0, 0, 0, 0, 0, pad))
            Cp = F.pad(Cp, (0, 0, 0, 0, 0, pad))
        y, final_state = ssd_minimal_discrete(X, Adt, Bp, Cp, self.chunk)
        if pad:
            y = y[:, :T]
        y = y + x * self.D[:, None]
        if cache is not None:
            cache["ssm"].copy_(final_state)
        y = self.norm(y.reshape(Bsz, T, self.d_inner), z)
        return self.out_proj(y)

    def allocate_cache(self, B, max_T):
        return {"conv": torch.zeros(B, self.conv_dim, self.K), "ssm": torch.zeros(B, self.H, self.P, self.N)}

    def step(self, hidden_states, cache, pos):
        # Mamba2.step without causal_conv1d_update / selective_state_update
        zxbcdt = self.in_proj(hidden_states.squeeze(1))
        z, xBC, dt = torch.split(zxbcdt, [self.d_inner, self.conv_dim, self.H], dim=-1)
        conv_state, ssm_state = cache["conv"], cache["ssm"]
        conv_state.copy_(torch.roll(conv_state, shifts=-1, dims=-1))
        conv_state[:, :, -1] = xBC
        xBC = torch.sum(conv_state * self.conv1d.weight.squeeze(1), dim=-1)
        if self.conv1d.bias is not None:
            xBC = xBC + self.conv1d.bias
        xBC = F.silu(xBC)
        x, B, C = torch.split(xBC, [self.d_inner, self.G * self.N, self.G * self.N], dim=-1)
        A = -torch.exp(_up(self.A_log))
        dt = F.softplus(dt + self.dt_bias)
        dA = torch.exp(dt * A)
        x = x.reshape(-1, self.H, self.P)
        if self.G == 1:
            dBx = torch.einsum("bh,bn,bhp->bhpn", dt, B, x)
            ssm_state.copy_(ssm_state * dA[:, :, None, None] + dBx)
            y = torch.einsum("bhpn,bn->bhp", ssm_state, C)
        else:
            Bh = B.reshape(-1, self.G, self.N).repeat_interleave(self.H // self.G, dim=1)
            Ch = C.reshape(-1, self.G, self.N).repeat_interleave(self.H // self.G, dim=1)
            dBx = torch.einsum("bh,bhn,bhp->bhpn", dt, Bh, x)
            ssm_state.copy_(ssm_state * dA[:, :, None, None] + dBx)
            y = torch.einsum("bhpn,bhn->bhp", ssm_state, Ch)
        y = y + self.D[:, None] * x
        y = self.norm(y.reshape(-1, self.d_inner), z)
        return self.out_proj(y).unsqueeze(1)


# ----------------------------------------------------------------------------------------------
# Mamba-1


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                       return_last_state=False):
    """mamba_ssm.ops.selective_scan_interface.selective_scan_ref (real A, variable B/C [b, n, l]).
    u, delta, z [b, d, l]; A [d, n]; D, delta_bias [d] -> out [b, d, l] (, last_state [b, d, n])."""
    dtype_in = u.dtype
    u = _up(u)
    delta = _up(delta)
    if delta_bias is not None:
        delta = delta + _up(delta_bias[..., None])
    if delta_softplus:
        delta = F.softplus(delta)
    batch, dim, dstate = u.shape[0], A.shape[0], A.shape[1]
    B = _up(B)
    C = _up(C)
    x = A.new_zeros((batch, dim, dstate))
    ys = []
    deltaA = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))
    deltaB_u = torch.einsum("bdl,bnl,bdl->bdln", delta, B, u)
    last_state = None
    for i in range(u.shape[2]):
        x = deltaA[:, :, i] * x + deltaB_u[:, :, i]
        y = torch.einsum("bdn,bn->bd", x, C[:, :, i])
        if i == u.shape[2] - 1:
            last_state = x
        ys.append(y)
    y = torch.stack(ys, dim=2)  # (batch dim L)
    out = y if D is None else y + u * D[:, None]
    if z is not None:
        out = out * F.silu(z)
    out = out.to(dtype=dtype_in)
    return out if not return_last_state else (out, last_state)


class Mamba(nn.Module):
    def __init__(self, cfg: ModelConfig, n_layers: int):
        super().__init__()
        m = cfg.mamba
        D = cfg.d_model
        self.d_inner = m.expand * D
        self.N, self.K, self.R = m.d_state, m.d_conv, m.dt_rank
        self.in_proj = nn.Linear(D, 2 * self.d_inner, bias=m.bias)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, self.K, groups=self.d_inner, padding=self.K - 1,
                                bias=m.conv_bias)
        self.selective = m.selective
        self.inner_norms = m.inner_norms
        if m.selective:
            self.x_proj = nn.Linear(self.d_inner, self.R + 2 * self.N, bias=False)
            if m.inner_norms:  # Jamba's JambaMambaMixer: RMSNorm on dt, B, C (eps = norm_eps)
                self.dt_layernorm = RMSNorm(self.R, cfg.norm_eps)
                self.b_layernorm = RMSNorm(self.N, cfg.norm_eps)
                self.c_layernorm = RMSNorm(self.N, cfg.norm_eps)
            self.dt_proj = nn.Linear(self.R, self.d_inner, bias=True)
            dt_init_std = self.R ** -0.5
            nn.init.uniform_(self.dt_proj.weight, -dt_init_std, dt_init_std)
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(m.dt_max) - math.log(m.dt_min))
                       + math.log(m.dt_min)).clamp(min=m.dt_init_floor)
        dt_bias = dt + torch.log(-torch.expm1(-dt))  # softplus(dt_bias) = dt
        if m.selective:
            with torch.no_grad():
                self.dt_proj.bias.copy_(dt_bias)
        else:
            # The non-selective baseline (S4D-like, strata's mamba.selective: false): dt = softplus(dt_bias)
            # per channel, and B, C [N] shared by every channel, position and sequence (strata's init:
            # B = 1, C ~ N(0, 1)); no x_proj, no dt_proj.
            self.dt_bias = nn.Parameter(dt_bias)
            self.B = nn.Parameter(torch.ones(self.N))
            self.C = nn.Parameter(torch.randn(self.N))
        A = torch.arange(1, self.N + 1, dtype=torch.float32).repeat(self.d_inner, 1).contiguous()
        self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, D, bias=m.bias)
        with torch.no_grad():
            self.out_proj.weight /= math.sqrt(n_layers)

    def _dt_B_C(self, x_flat, batch, seqlen):
        """dt [batch, d_inner, L] (before the bias), B and C [batch, N, L]: from x (selective) or constants."""
        if not self.selective:
            dt = torch.zeros(batch, self.d_inner, seqlen, dtype=x_flat.dtype)
            B = _up(self.B)[None, :, None].expand(batch, self.N, seqlen).contiguous()
            C = _up(self.C)[None, :, None].expand(batch, self.N, seqlen).contiguous()
            return dt, B, C
        x_dbl = self.x_proj(x_flat)  # (bl d)
        dt, B, C = self._inner_norms(*torch.split(x_dbl, [self.R, self.N, self.N], dim=-1))
        dt = self.dt_proj.weight @ dt.t()
        dt = dt.reshape(-1, batch, seqlen).transpose(0, 1)
        B = B.reshape(batch, seqlen, self.N).transpose(1, 2).contiguous()
        C = C.reshape(batch, seqlen, self.N).transpose(1, 2).contiguous()
        return dt, B, C

    def _dt_bias(self):
        return _up(self.dt_proj.bias) if self.selective else _up(self.dt_bias)

    def _inner_norms(self, dt, B, C):
        if not self.inner_norms:
            return dt, B, C
        return self.dt_layernorm(dt), self.b_layernorm(B), self.c_layernorm(C)

    def forward(self, hidden_states, cache=None):
        # mamba_simple.Mamba.forward, the path without the fused kernels
        batch, seqlen, dim = hidden_states.shape
        xz = (self.in_proj.weight @ hidden_states.reshape(-1, dim).t()).reshape(-1, batch, seqlen).transpose(0, 1)
        if self.in_proj.bias is not None:
            xz = xz + self.in_proj.bias[:, None]
        A = -torch.exp(_up(self.A_log))
        x, z = xz.chunk(2, dim=1)
        if cache is not None:
            cache["conv"].copy_(F.pad(x, (self.K - x.shape[-1], 0)))
        x = F.silu(self.conv1d(x)[..., :seqlen])
        dt, B, C = self._dt_B_C(x.transpose(1, 2).reshape(batch * seqlen, -1), batch, seqlen)
        y = selective_scan_ref(x, dt, A, B, C, _up(self.D), z=z, delta_bias=self._dt_bias(),
                               delta_softplus=True, return_last_state=cache is not None)
        if cache is not None:
            y, last_state = y
            cache["ssm"].copy_(last_state)
        return self.out_proj(y.transpose(1, 2))

    def allocate_cache(self, B, max_T):
        return {"conv": torch.zeros(B, self.d_inner, self.K), "ssm": torch.zeros(B, self.d_inner, self.N)}

    def step(self, hidden_states, cache, pos):
        # mamba_simple.Mamba.step without causal_conv1d_update / selective_state_update
        xz = self.in_proj(hidden_states.squeeze(1))
        x, z = xz.chunk(2, dim=-1)
        conv_state, ssm_state = cache["conv"], cache["ssm"]
        conv_state.copy_(torch.roll(conv_state, shifts=-1, dims=-1))
        conv_state[:, :, -1] = x
        x = torch.sum(conv_state * self.conv1d.weight.squeeze(1), dim=-1)
        if self.conv1d.bias is not None:
            x = x + self.conv1d.bias
        x = F.silu(x)
        if self.selective:
            x_db = self.x_proj(x)
            dt, B, C = self._inner_norms(*torch.split(x_db, [self.R, self.N, self.N], dim=-1))
            dt = F.softplus(F.linear(dt, self.dt_proj.weight) + self.dt_proj.bias)
        else:
            dt = F.softplus(self.dt_bias).expand(x.shape[0], -1)
            B, C = self.B.expand(x.shape[0], -1), self.C.expand(x.shape[0], -1)
        A = -torch.exp(_up(self.A_log))
        dA = torch.exp(torch.einsum("bd,dn->bdn", dt, A))
        dB = torch.einsum("bd,bn->bdn", dt, B)
        ssm_state.copy_(ssm_state * dA + x[:, :, None] * dB)
        y = torch.einsum("bdn,bn->bd", ssm_state, C)
        y = y + self.D * x
        y = y * F.silu(z)
        return self.out_proj(y).unsqueeze(1)


# ----------------------------------------------------------------------------------------------
# Model

_SUBLAYER_NAME = {"M": "mixer", "*": "self_attn", "-": "mlp", "E": "moe"}


class Layer(nn.Module):
    def __init__(self, kind: str, cfg: ModelConfig, n_layers: int):
        super().__init__()
        self.kind = kind
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        if kind == "M":
            block = Mamba(cfg, n_layers) if cfg.mamba.version == 1 else Mamba2(cfg, n_layers)
        elif kind == "*":
            block = LatentAttention(cfg) if cfg.attention.kind == "mla" else Attention(cfg)
        elif kind == "-":
            block = MLP(cfg.d_model, cfg.mlp.hidden)
        elif kind == "E":
            block = MoE(cfg)
        else:
            raise ValueError(f"unknown layer kind '{kind}' (valid: M * - E)")
        self.block_name = _SUBLAYER_NAME[kind]
        setattr(self, self.block_name, block)

    @property
    def block(self):
        return getattr(self, self.block_name)


class Model(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        resolve(cfg)
        self.cfg = cfg
        pattern = cfg.pattern * cfg.repeat
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.d_model)
        nn.init.normal_(self.embed_tokens.weight, std=cfg.init_std)
        self.layers = nn.ModuleList(Layer(c, cfg, len(pattern)) for c in pattern)
        self.norm_f = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.lm_head = None if cfg.tie_embeddings else nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)

    def head(self, h):
        return F.linear(h, self.embed_tokens.weight if self.lm_head is None else self.lm_head.weight)

    def forward(self, ids, cache=None):
        """ids [B, T] -> logits [B, T, V]. With a cache (from allocate_cache), fills it (prefill)."""
        x = self.embed_tokens(ids)
        for i, layer in enumerate(self.layers):
            x = x + layer.block(layer.norm(x), None if cache is None else cache[i])
        return self.head(self.norm_f(x))

    def aux_loss(self):
        aux = [l.block.aux for l in self.layers if isinstance(l.block, MoE) and l.block.aux is not None]
        return sum(aux) if aux else None

    def loss(self, ids, targets):
        logits = self.forward(ids)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-1)
        aux = self.aux_loss()
        return loss, (loss + aux if aux is not None else loss)

    def allocate_cache(self, B, max_T):
        return [l.block.allocate_cache(B, max_T) if hasattr(l.block, "allocate_cache") else None
                for l in self.layers]

    def step(self, ids, cache, pos: int):
        """ids [B] at position `pos` -> logits [B, V]; advances the cache."""
        x = self.embed_tokens(ids)[:, None]
        for i, layer in enumerate(self.layers):
            x = x + layer.block.step(layer.norm(x), cache[i], pos)
        return self.head(self.norm_f(x))[:, 0]

    def param_groups(self, weight_decay):
        """strata's decay mask: matrices (and the embedding) decayed; norms, biases, A_log, D,
        dt_bias not."""
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            (decay if p.dim() >= 2 and not name.endswith("A_log") else no_decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
