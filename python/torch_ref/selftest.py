"""Self-consistency of the PyTorch peer (no strata needed): step-by-step decode reproduces the
full forward for every block kind, and the chunked SSD equals the plain recurrence.
  python -m torch_ref.selftest"""
from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

from .config import ModelConfig, MambaConfig, AttentionConfig, MoeConfig, resolve
from .model import Model, ssd_minimal_discrete


def ssd_naive(X, A, B, C):
    b, l, h, p = X.shape
    g = B.shape[2]
    S = torch.zeros(b, h, p, B.shape[-1], dtype=X.dtype)
    ys = []
    for t in range(l):
        Bh = B[:, t].repeat_interleave(h // g, dim=1)
        Ch = C[:, t].repeat_interleave(h // g, dim=1)
        S = S * torch.exp(A[:, t])[:, :, None, None] + X[:, t, :, :, None] * Bh[:, :, None, :]
        ys.append(torch.einsum("bhpn,bhn->bhp", S, Ch))
    return torch.stack(ys, 1), S


def main():
    torch.manual_seed(0)
    torch.set_default_dtype(torch.float64)
    ok = True
    for g in (1, 2):
        X = torch.randn(2, 24, 4, 3)
        A = -torch.rand(2, 24, 4)
        B = torch.randn(2, 24, g, 5)
        C = torch.randn(2, 24, g, 5)
        y, s = ssd_minimal_discrete(X, A, B, C, 8)
        yr, sr = ssd_naive(X, A, B, C)
        err = max((y - yr).abs().max().item(), (s - sr).abs().max().item())
        print(f"ssd chunked vs recurrence (groups {g}): {err:.2e}")
        ok &= err < 1e-9
    cases = {
        "hybrid M2 (chunk 8, T=21)": ModelConfig(d_model=32, pattern="M-*E", mamba=MambaConfig(
            version=2, d_state=8, head_dim=8, chunk=8), attention=AttentionConfig(heads=4, kv_heads=2),
            moe=MoeConfig(experts=4, top_k=2, shared_experts=1)),
        "mamba2 groups 2": ModelConfig(d_model=32, pattern="M", repeat=2, mamba=MambaConfig(
            version=2, d_state=8, head_dim=8, chunk=4, ngroups=2)),
        "mamba1": ModelConfig(d_model=32, pattern="M-", mamba=MambaConfig(version=1, d_state=8)),
        "mha": ModelConfig(d_model=32, pattern="*", attention=AttentionConfig(heads=4)),
        "gqa, partial llama3 rope": ModelConfig(d_model=32, pattern="*", attention=AttentionConfig(
            heads=4, kv_heads=2, rope_dims=4, rope_type="llama3", rope_factor=8.0, rope_original_max_positions=16)),
        "gqa without rope": ModelConfig(d_model=32, pattern="*", attention=AttentionConfig(heads=4, rope=False)),
        "mla v3 (q_lora, interleaved rope)": ModelConfig(d_model=32, pattern="*-", attention=AttentionConfig(
            heads=4, kind="mla", q_lora_rank=16, kv_lora_rank=24, qk_nope_head_dim=8, qk_rope_head_dim=4,
            v_head_dim=6)),
        "mla v2 (rotate_half rope)": ModelConfig(d_model=32, pattern="*", attention=AttentionConfig(
            heads=4, kind="mla", rope_interleave=False)),
        "mamba1 inner norms": ModelConfig(d_model=32, pattern="M", mamba=MambaConfig(version=1, d_state=8,
                                                                                      inner_norms=True)),
        "mamba1 non-selective": ModelConfig(d_model=32, pattern="M-", mamba=MambaConfig(version=1, d_state=8,
                                                                                         selective=False)),
        "gqa, window 4 (decode past it)": ModelConfig(d_model=32, pattern="*", attention=AttentionConfig(
            heads=4, kv_heads=2, window=4)),
        "mla, window 3": ModelConfig(d_model=32, pattern="*", attention=AttentionConfig(heads=4, kind="mla", window=3)),
    }
    for name, mc in cases.items():
        resolve(mc)
        m = Model(mc).eval()
        Bsz, T, P = 2, 21, 5
        ids = torch.randint(0, 256, (Bsz, T))
        with torch.no_grad():
            full = m(ids)
            cache = m.allocate_cache(Bsz, T)
            out = [m(ids[:, :P], cache)]
            for t in range(P, T):
                out.append(m.step(ids[:, t], cache, t)[:, None])
            got = torch.cat(out, 1)
        err = (got - full).abs().max().item()
        print(f"{name}: prefill {P} + steps vs forward: {err:.2e}")
        ok &= err < 1e-9  # everything in fp64
    print("selftest: " + ("OK" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
