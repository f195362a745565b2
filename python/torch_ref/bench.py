"""Times the PyTorch peer the way bench/bench_model.cpp times strata, and prints the same JSON line.

  python -m torch_ref.bench CONFIG.yaml [--batch B --seq T --train-steps N --decode-tokens N
                                         --decode-batch B[,B...] --device cpu|cuda ...] [key=value overrides]
  python -m torch_ref.bench CONFIG.yaml --check DIR    # compare with `bench_model --dump DIR`

Training step: forward + cross-entropy (+ MoE aux loss) + backward + global-norm clipping
(optim.clip) + torch.optim.AdamW.step, random byte tokens, warm-up steps excluded.
Decode: batch-B greedy decoding, one token per sequence per step through the KV / conv / SSM
caches, after a short prefill (not timed) and a few untimed warm-up steps, once per batch size.
--device cuda: eager PyTorch on the GPU (the model built there through torch.set_default_device,
batches drawn on the host from the same seeded generator and copied), fp32 without TF32 (as
strata's fp32 path); the timers wait for the GPU. train.device in the overrides is strata's
switch and is ignored here.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

from . import grads
from .config import load_config
from .model import Model


def batch_list(text):
    try:
        out = [int(x) for x in text.split(",")]
    except ValueError:
        out = []
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got '{text}'")
    return out


def synchronize():
    """Waits for queued GPU work, so that a wall-clock interval covers it (a no-op on cpu)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


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
    ap.add_argument("--decode-batch", type=batch_list, default=[4],
                    help="sequences decoded at once; a comma-separated list runs one decode per size")
    ap.add_argument("--decode-warmup", type=int, default=4, help="untimed decode steps first")
    ap.add_argument("--prefill", type=int, default=16, help="prompt tokens before decoding (untimed)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: os.cpu_count())")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where the model runs")
    ap.add_argument("--check", metavar="DIR", help="load the weights bench_model --dump wrote there and "
                    "compare loss, gradients and decode logits with strata's instead of timing")
    return ap.parse_args(argv)


def bench_train(model, cfg, B, T, steps, warmup, gen):
    V = cfg.model.vocab_size
    o = cfg.optim
    opt = torch.optim.AdamW(model.param_groups(o.weight_decay), lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps)
    model.train()
    losses = []

    dev = next(model.parameters()).device

    def one_step():
        data = torch.randint(0, V, (B, T + 1), generator=gen, device="cpu").to(dev)
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
    synchronize()
    dt = time.perf_counter() - t0
    return (B * T * steps / dt if steps and dt > 0 else 0.0), dt, losses


@torch.inference_mode()
def bench_decode(model, cfg, Bd, prefill, warmup, tokens, gen):
    V = cfg.model.vocab_size
    model.eval()
    cache = model.allocate_cache(Bd, prefill + warmup + tokens)
    prompt = torch.randint(0, V, (Bd, max(prefill, 1)), generator=gen, device="cpu").to(next(model.parameters()).device)
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
    synchronize()
    t0 = time.perf_counter()
    for _ in range(tokens):
        nxt = model.step(nxt, cache, pos).argmax(-1)
        pos += 1
    synchronize()
    dt = time.perf_counter() - t0
    return (Bd * tokens / dt if tokens and dt > 0 else 0.0), dt


def check(model, cfg, d):
    """Loads strata's weights (bench_model --dump) and compares the loss, the gradients and the
    decode logits (torch_ref.grads: the same oracle as tests/test_grad_parity_torch.cpp)."""
    meta, params, strata_grads = grads.read_dump(d)
    try:
        grads.load_weights(model, params)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 1
    ok = True
    tr = meta["train"]
    shape = (tr["batch"], tr["seq"])
    r = grads.loss_and_grads(model, torch.tensor(tr["ids"]).view(shape), torch.tensor(tr["targets"]).view(shape))
    loss, aux = r["loss"], r["aux_loss"]
    rel = abs(loss - tr["loss"]) / max(abs(tr["loss"]), 1e-6)
    print(f"loss: torch {loss:.6f} strata {tr['loss']:.6f} (rel diff {rel:.2e}); "
          f"aux: torch {aux:.6f} strata {tr['aux_loss']:.6f}")
    ok &= rel < 1e-4 and abs(aux - tr["aux_loss"]) < 1e-4 * max(1.0, abs(tr["aux_loss"]))
    # gradients: per tensor, max |torch - strata| relative to strata's largest gradient in it (floored
    # at 1e-3 of the largest gradient anywhere, for tensors whose gradient is ~0). A loose bound: the
    # dump's weights come from three AdamW steps at lr 1e-2 and the configs are full size; the tight
    # per-tensor bound is tests/test_grad_parity_torch.cpp's.
    errs = grads.grad_errors(r["grads"], strata_grads, floor=1e-3)
    worst = max(errs, key=lambda e: e["rel"])
    print(f"grads: worst relative diff {worst['rel']:.2e} ({worst['name']})")
    ok &= worst["rel"] < 1e-3

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
    if a.device == "cuda":
        if not torch.cuda.is_available():
            print("torch_ref.bench: --device cuda: torch sees no CUDA device", file=sys.stderr)
            return 1
        # fp32 as strata's fp32 path computes it: no TF32 in matmuls or cuDNN convolutions.
        torch.set_float32_matmul_precision("highest")
        torch.backends.cudnn.allow_tf32 = False
        torch.set_default_device("cuda")  # the model, its buffers and every cache it allocates
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
    gen = torch.Generator(device="cpu").manual_seed(a.seed)
    train_tps, train_s, losses = bench_train(model, cfg, B, T, a.train_steps, a.warmup_steps, gen)
    decodes = []
    for Bd in a.decode_batch:
        tps, secs = bench_decode(model, cfg, Bd, a.prefill, a.decode_warmup, a.decode_tokens, gen)
        decodes.append({"batch": Bd, "tokens_per_s": tps, "seconds": secs})
    print(json.dumps({
        "train_tokens_per_s": train_tps, "decode_tokens_per_s": decodes[0]["tokens_per_s"], "params": params,
        "impl": "torch", "torch": torch.__version__, "threads": threads, "layers": cfg.model.pattern * cfg.model.repeat,
        "device": a.device, "device_name": torch.cuda.get_device_name() if a.device == "cuda" else "cpu",
        "decode": decodes,
        "batch": B, "seq": T, "train_steps": a.train_steps, "train_s": train_s,
        "decode_batch": a.decode_batch[0], "decode_tokens": a.decode_tokens, "decode_s": decodes[0]["seconds"],
        "prefill": a.prefill,
        "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
