"""The strata architecture in plain PyTorch eager: the peer a researcher would otherwise write.

Model = embedding -> layers (each x + block(rmsnorm(x)), one per pattern character) -> final
RMSNorm -> head tied to the embedding. Blocks:
  '*' attention: q/k/v/o without bias, RoPE (Hugging Face rotate_half), GQA,
      F.scaled_dot_product_attention(is_causal=True); decode with a preallocated KV cache.
  '-' SwiGLU MLP (Llama): down(silu(gate(x)) * up(x)).
  'E' MoE as Hugging Face Mixtral's eager loop: softmax router, top-k, renormalised gates, each
      expert runs over the tokens routed to it (torch.where + index_add_), Switch aux loss.
  'M' mamba.version 2: mamba_ssm's Mamba2 module (in_proj [z, xBC, dt] -> depthwise causal conv1d
      + silu -> SSD -> gated RMSNorm -> out_proj) with the SSD in plain torch ops as
      ssd_minimal.py's chunked ssd_minimal_discrete; decode as Mamba2.step's torch path.
  'M' mamba.version 1: mamba_ssm's Mamba (mamba_simple.py, the path without causal_conv1d /
      fused kernels) with selective_scan_ref (a Python loop over T); decode as Mamba.step.
Parameter names and shapes are strata's (Hugging Face style), so a strata checkpoint's tensors
load with load_state_dict (bench/vs_pytorch.py --check uses this to confirm both sides compute the
same function). No mamba_ssm, causal_conv1d, triton or einops: torch only.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig, resolve


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


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        a = cfg.attention
        D = cfg.d_model
        self.Hq, self.Hkv, self.hd = a.heads, a.kv_heads, a.head_dim
        self.q_proj = nn.Linear(D, self.Hq * self.hd, bias=False)
        self.k_proj = nn.Linear(D, self.Hkv * self.hd, bias=False)
        self.v_proj = nn.Linear(D, self.Hkv * self.hd, bias=False)
        self.o_proj = nn.Linear(self.Hq * self.hd, D, bias=False)
        inv_freq = 1.0 / (a.rope_theta ** (torch.arange(0, self.hd, 2, dtype=torch.float32) / self.hd))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def rope(self, q, k, pos0: int, T: int):
        # HF LlamaRotaryEmbedding + apply_rotary_pos_emb: q, k [B, H, T, hd]
        pos = torch.arange(pos0, pos0 + T, dtype=torch.float32)
        freqs = torch.outer(pos, self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin

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
        o = F.scaled_dot_product_attention(q, cache["k"][:, :, : pos + 1], cache["v"][:, :, : pos + 1],
                                           enable_gqa=self.Hq != self.Hkv)
        return self.o_proj(o.transpose(1, 2).reshape(B, 1, self.Hq * self.hd))


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

    def forward(self, x, cache=None):
        shape = x.shape
        h = x.reshape(-1, shape[-1])
        router_logits = self.gate(h)
        probs = F.softmax(router_logits, dim=1, dtype=torch.float)
        routing_weights, selected_experts = torch.topk(probs, self.k, dim=-1)
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
        self.norm = RMSNormGated(self.d_inner, 1e-5, self.d_inner // self.G)
        self.out_proj = nn.Linear(self.d_inner, D, bias=m.bias)
        with torch.no_grad():
            self.out_proj.weight /= math.sqrt(n_layers)

    def forward(self, u, cache=None):
        Bsz, T, _ = u.shape
        zxbcdt = self.in_proj(u)
        A = -torch.exp(self.A_log.float())
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
        A = -torch.exp(self.A_log.float())
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
    u = u.float()
    delta = delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias[..., None].float()
    if delta_softplus:
        delta = F.softplus(delta)
    batch, dim, dstate = u.shape[0], A.shape[0], A.shape[1]
    B = B.float()
    C = C.float()
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
        self.x_proj = nn.Linear(self.d_inner, self.R + 2 * self.N, bias=False)
        self.dt_proj = nn.Linear(self.R, self.d_inner, bias=True)
        dt_init_std = self.R ** -0.5
        nn.init.uniform_(self.dt_proj.weight, -dt_init_std, dt_init_std)
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(m.dt_max) - math.log(m.dt_min))
                       + math.log(m.dt_min)).clamp(min=m.dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        A = torch.arange(1, self.N + 1, dtype=torch.float32).repeat(self.d_inner, 1).contiguous()
        self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, D, bias=m.bias)
        with torch.no_grad():
            self.out_proj.weight /= math.sqrt(n_layers)

    def forward(self, hidden_states, cache=None):
        # mamba_simple.Mamba.forward, the path without the fused kernels
        batch, seqlen, dim = hidden_states.shape
        xz = (self.in_proj.weight @ hidden_states.reshape(-1, dim).t()).reshape(-1, batch, seqlen).transpose(0, 1)
        if self.in_proj.bias is not None:
            xz = xz + self.in_proj.bias[:, None]
        A = -torch.exp(self.A_log.float())
        x, z = xz.chunk(2, dim=1)
        if cache is not None:
            cache["conv"].copy_(F.pad(x, (self.K - x.shape[-1], 0)))
        x = F.silu(self.conv1d(x)[..., :seqlen])
        x_dbl = self.x_proj(x.transpose(1, 2).reshape(batch * seqlen, -1))  # (bl d)
        dt, B, C = torch.split(x_dbl, [self.R, self.N, self.N], dim=-1)
        dt = self.dt_proj.weight @ dt.t()
        dt = dt.reshape(-1, batch, seqlen).transpose(0, 1)
        B = B.reshape(batch, seqlen, self.N).transpose(1, 2).contiguous()
        C = C.reshape(batch, seqlen, self.N).transpose(1, 2).contiguous()
        y = selective_scan_ref(x, dt, A, B, C, self.D.float(), z=z, delta_bias=self.dt_proj.bias.float(),
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
        x_db = self.x_proj(x)
        dt, B, C = torch.split(x_db, [self.R, self.N, self.N], dim=-1)
        dt = F.linear(dt, self.dt_proj.weight)
        A = -torch.exp(self.A_log.float())
        dt = F.softplus(dt + self.dt_proj.bias)
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
            block = Attention(cfg)
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
