"""Times the PyTorch peer the way bench/bench_model.cpp times strata, and prints the same JSON line.

  python -m torch_ref.bench CONFIG.yaml [--batch B --seq T --train-steps N --decode-tokens N
                                         --decode-batch B ...] [key=value overrides]
  python -m torch_ref.bench CONFIG.yaml --check DIR    # compare with `bench_model --dump DIR`

Training step: forward + cross-entropy (+ MoE aux loss) + backward + global-norm clipping
(optim.clip) + torch.optim.AdamW.step, random byte tokens, warm-up steps excluded.
Decode: batch-B greedy decoding, one token per sequence per step through the KV / conv / SSM
caches, after a short prefill (not timed) and a few untimed warm-up steps.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

from .config import load_config
from .model import Model


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m torch_ref.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("overrides", nargs="*", help="key=value config overrides (e.g. model.repeat=2)")
    ap.add_argument("--batch", type=int, default=0, help="training batch (default: train.batch)")
    ap.add_argument("--seq", type=int, default=0, help="training sequence length (default: train.seq)")
    ap.add_argument("--train-steps", type=int, default=10, help="timed training steps")
    ap.add_argument("--warmup-steps", type=int, default=2, help="untimed training steps first")
    ap.add_argument("--decode-tokens", type=int, default=64, help="timed decode steps")
    ap.add_argument("--decode-batch", type=int, default=4, help="sequences decoded at once")
    ap.add_argument("--decode-warmup", type=int, default=4, help="untimed decode steps first")
    ap.add_argument("--prefill", type=int, default=16, help="prompt tokens before decoding (untimed)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: os.cpu_count())")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--check", metavar="DIR", help="load the weights bench_model --dump wrote there and "
                    "compare loss and decode logits with strata's instead of timing")
    return ap.parse_args(argv)


def bench_train(model, cfg, B, T, steps, warmup, gen):
    V = cfg.model.vocab_size
    o = cfg.optim
    opt = torch.optim.AdamW(model.param_groups(o.weight_decay), lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps)
    model.train()
    losses = []

    def one_step():
        data = torch.randint(0, V, (B, T + 1), generator=gen)
        ids, tgt = data[:, :-1], data[:, 1:]
        opt.zero_grad(set_to_none=True)
        loss, total = model.loss(ids, tgt)
        total.backward()
        if o.clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), o.clip)
        opt.step()
        losses.append(float(loss.detach()))

    for _ in range(warmup):
        one_step()
    t0 = time.perf_counter()
    for _ in range(steps):
        one_step()
    dt = time.perf_counter() - t0
    return (B * T * steps / dt if steps and dt > 0 else 0.0), dt, losses


@torch.inference_mode()
def bench_decode(model, cfg, Bd, prefill, warmup, tokens, gen):
    V = cfg.model.vocab_size
    model.eval()
    cache = model.allocate_cache(Bd, prefill + warmup + tokens)
    prompt = torch.randint(0, V, (Bd, max(prefill, 1)), generator=gen)
    if prefill > 0:
        logits = model(prompt, cache)[:, -1]
        pos = prefill
    else:
        logits = model.step(prompt[:, 0], cache, 0)
        pos = 1
    nxt = logits.argmax(-1)
    for _ in range(warmup):
        nxt = model.step(nxt, cache, pos).argmax(-1)
        pos += 1
    t0 = time.perf_counter()
    for _ in range(tokens):
        nxt = model.step(nxt, cache, pos).argmax(-1)
        pos += 1
    dt = time.perf_counter() - t0
    return (Bd * tokens / dt if tokens and dt > 0 else 0.0), dt


def check(model, cfg, d):
    """Loads strata's weights (bench_model --dump) and compares the loss and the decode logits."""
    import numpy as np

    meta = json.load(open(os.path.join(d, "dump.json")))
    flat = np.fromfile(os.path.join(d, "params.bin"), dtype=np.float32)
    sd = {}
    for p in meta["params"]:
        sd[p["name"]] = torch.from_numpy(flat[p["offset"] : p["offset"] + p["numel"]].copy()).reshape(p["shape"])
    own = dict(model.named_parameters())
    missing = sorted(set(own) - set(sd))
    extra = sorted(set(sd) - set(own))
    if missing or extra:
        print(f"parameter names differ: torch only {missing}, strata only {extra}", file=sys.stderr)
        return 1
    for k, v in sd.items():
        if tuple(own[k].shape) != tuple(v.shape):
            print(f"{k}: torch shape {tuple(own[k].shape)} vs strata {tuple(v.shape)}", file=sys.stderr)
            return 1
    model.load_state_dict(sd, strict=False)  # buffers (inv_freq) are not parameters
    ok = True
    tr = meta["train"]
    ids = torch.tensor(tr["ids"], dtype=torch.long).view(tr["batch"], tr["seq"])
    tgt = torch.tensor(tr["targets"], dtype=torch.long).view(tr["batch"], tr["seq"])
    model.train()
    model.zero_grad(set_to_none=True)
    loss, total = model.loss(ids, tgt)
    total.backward()
    aux = model.aux_loss()
    aux = float(aux.detach()) if aux is not None else 0.0
    loss = loss.detach()
    rel = abs(float(loss) - tr["loss"]) / max(abs(tr["loss"]), 1e-6)
    print(f"loss: torch {float(loss):.6f} strata {tr['loss']:.6f} (rel diff {rel:.2e}); "
          f"aux: torch {aux:.6f} strata {tr['aux_loss']:.6f}")
    ok &= rel < 1e-4 and abs(aux - tr["aux_loss"]) < 1e-4 * max(1.0, abs(tr["aux_loss"]))
    # gradients: per tensor, max |torch - strata| relative to the tensor's largest gradient (floored
    # at 1e-3 of the largest gradient anywhere, for tensors whose gradient is ~0)
    gflat = np.fromfile(os.path.join(d, "grads.bin"), dtype=np.float32)
    gs = {p["name"]: torch.from_numpy(gflat[p["offset"] : p["offset"] + p["numel"]].copy()).reshape(p["shape"])
          for p in meta["params"]}
    gmax = max(g.abs().max().item() for g in gs.values())
    worst, worst_name = 0.0, ""
    for name, prm in model.named_parameters():
        g = prm.grad if prm.grad is not None else torch.zeros_like(prm)
        err = (g - gs[name]).abs().max().item() / max(gs[name].abs().max().item(), 1e-3 * gmax, 1e-30)
        if err > worst:
            worst, worst_name = err, name
    print(f"grads: worst relative diff {worst:.2e} ({worst_name})")
    ok &= worst < 1e-3

    dc = meta["decode"]
    Bd, P = dc["batch"], dc["prefill"]
    steps = torch.tensor(dc["step_ids"], dtype=torch.long).view(-1, Bd)
    model.eval()
    with torch.inference_mode():
        cache = model.allocate_cache(Bd, P + steps.shape[0])
        prompt = torch.tensor(dc["prompt"], dtype=torch.long).view(Bd, P)
        logits = model(prompt, cache)[:, -1]
        full = [logits]
        for i in range(steps.shape[0]):
            full.append(model.step(steps[i], cache, P + i))
        # the same tokens through forward() without a cache: parity of step with forward
        seq = torch.cat([prompt, steps.t()], dim=1)
        ref = model(seq)[:, P - 1 :]
    got = torch.stack(full, dim=1)
    strata = torch.tensor(dc["logits"], dtype=torch.float32).view(got.shape)
    d_strata = (got - strata).abs().max().item()
    d_parity = (got - ref).abs().max().item()
    print(f"decode logits [{Bd} x {got.shape[1]} x V]: max |torch - strata| {d_strata:.2e}, "
          f"max |torch step - torch forward| {d_parity:.2e}")
    ok &= d_strata < 1e-3 and d_parity < 1e-3
    print("check: " + ("OK" if ok else "MISMATCH"))
    return 0 if ok else 1


def main(argv=None):
    a = parse_args(argv)
    threads = a.threads or os.cpu_count()
    torch.set_num_threads(threads)
    torch.manual_seed(a.seed)
    try:
        cfg = load_config(a.config, a.overrides)
    except (OSError, ValueError) as e:
        print(f"torch_ref.bench: {e}", file=sys.stderr)
        return 1
    model = Model(cfg.model)
    params = sum(p.numel() for p in model.parameters())
    if a.check:
        return check(model, cfg, a.check)
    B = a.batch or cfg.train.batch
    T = a.seq or cfg.train.seq
    gen = torch.Generator().manual_seed(a.seed)
    train_tps, train_s, losses = bench_train(model, cfg, B, T, a.train_steps, a.warmup_steps, gen)
    dec_tps, dec_s = bench_decode(model, cfg, a.decode_batch, a.prefill, a.decode_warmup, a.decode_tokens, gen)
    print(json.dumps({
        "train_tokens_per_s": train_tps, "decode_tokens_per_s": dec_tps, "params": params,
        "impl": "torch", "torch": torch.__version__, "threads": threads, "layers": cfg.model.pattern * cfg.model.repeat,
        "batch": B, "seq": T, "train_steps": a.train_steps, "train_s": train_s,
        "decode_batch": a.decode_batch, "decode_tokens": a.decode_tokens, "decode_s": dec_s, "prefill": a.prefill,
        "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
