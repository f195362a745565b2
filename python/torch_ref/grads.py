"""Loss and parameter gradients of the PyTorch peer on strata's weights and batch: the one oracle
behind `python -m torch_ref.bench --check` (bench/vs_pytorch.py --check) and
tests/test_grad_parity_torch.cpp.

A dump directory (written by `bench_model --dump DIR` or by the test) holds
  dump.json   {"params": [{"name", "shape", "offset", "numel"}, ...]   strata's ParamStore layout,
               "train": {"batch", "seq", "ids", "targets", "loss", "aux_loss"}, ...}
  params.bin  strata's flat fp32 parameters (the offsets above)
  grads.bin   strata's flat fp32 gradients (same layout), when the caller compares here
  config.yaml the full resolved config (strata's to_yaml), when no config is given otherwise
The loss is strata's (models/model.h): mean cross-entropy over the targets (< 0 ignored) plus, per
MoE layer, moe.aux_loss times the Switch load-balancing loss; gradients are of that sum.

  python -m torch_ref.grads DIR... [--dtypes float32,float64]
computes, for each DIR and dtype, the loss and the gradients and writes DIR/torch_<dtype>.bin
(strata's flat layout, always fp32 on disk: an fp64 gradient rounded once) and DIR/torch.json
{"<dtype>": {"loss", "aux_loss", "route_margin"}}. route_margin is the smallest gap between the k-th
and (k+1)-th router probability over every token of every MoE layer (None without MoE): a gap near
fp32 rounding would let the two implementations route a token differently.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

from .config import load_config
from .model import Model, MoE

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def flat_size(params: list[dict]) -> int:
    """Floats up to the end of the last tensor (strata may pad between tensors for alignment)."""
    return max((p["offset"] + p["numel"] for p in params), default=0)


def read_flat(path: str, params: list[dict]) -> dict[str, torch.Tensor]:
    """A flat fp32 file in strata's layout -> {name: tensor of its shape}."""
    flat = np.fromfile(path, dtype=np.float32)
    if flat.size < flat_size(params):
        raise ValueError(f"{path}: {flat.size} floats, the parameter list needs {flat_size(params)}")
    return {p["name"]: torch.from_numpy(flat[p["offset"] : p["offset"] + p["numel"]].copy()).reshape(p["shape"])
            for p in params}


def write_flat(path: str, tensors: dict[str, torch.Tensor], params: list[dict]) -> None:
    """{name: tensor} -> a flat fp32 file in strata's layout (padding and absent names are zero)."""
    flat = np.zeros(flat_size(params), dtype=np.float32)
    for p in params:
        t = tensors.get(p["name"])
        if t is not None:
            flat[p["offset"] : p["offset"] + p["numel"]] = t.detach().to("cpu", torch.float32).reshape(-1).numpy()
    flat.tofile(path)


def read_dump(d: str):
    """-> (meta, params, strata_grads or None)."""
    with open(os.path.join(d, "dump.json")) as f:
        meta = json.load(f)
    params = read_flat(os.path.join(d, "params.bin"), meta["params"])
    gpath = os.path.join(d, "grads.bin")
    grads = read_flat(gpath, meta["params"]) if os.path.exists(gpath) else None
    return meta, params, grads


def load_weights(model: torch.nn.Module, params: dict[str, torch.Tensor]) -> None:
    """Copies strata's tensors into the peer; the names and shapes must match exactly (ValueError)."""
    own = dict(model.named_parameters())
    missing, extra = sorted(set(own) - set(params)), sorted(set(params) - set(own))
    if missing or extra:
        raise ValueError(f"parameter names differ: torch only {missing}, strata only {extra}")
    for k, v in params.items():
        if tuple(own[k].shape) != tuple(v.shape):
            raise ValueError(f"{k}: torch shape {tuple(own[k].shape)} vs strata {tuple(v.shape)}")
    with torch.no_grad():
        for k, v in params.items():
            own[k].copy_(v)  # to the parameter's device and dtype (fp32 -> fp64 is exact)


def peer(model_cfg, params: dict[str, torch.Tensor], dtype=torch.float32) -> Model:
    """The PyTorch model of `model_cfg` (torch_ref.config) holding strata's weights, in `dtype`."""
    model = Model(model_cfg).to(dtype)
    load_weights(model, params)
    return model


def route_margin(model: Model):
    margins = [m.route_margin for m in model.modules() if isinstance(m, MoE) and m.route_margin is not None]
    return min(margins) if margins else None


def loss_and_grads(model: Model, ids, targets) -> dict:
    """One forward + backward of strata's training loss on ids/targets [B, T] (int lists or tensors).
    -> {"loss": cross-entropy, "aux_loss": sum of the MoE aux terms (0 without), "route_margin",
        "grads": {name: d(loss + aux)/d(param)} (zeros for a parameter the loss does not reach)}."""
    dev = next(model.parameters()).device
    ids = torch.as_tensor(ids, dtype=torch.long, device=dev)
    targets = torch.as_tensor(targets, dtype=torch.long, device=dev)
    model.train()
    model.zero_grad(set_to_none=True)
    loss, total = model.loss(ids, targets)
    total.backward()
    aux = model.aux_loss()
    return {
        "loss": float(loss.detach()),
        "aux_loss": float(aux.detach()) if aux is not None else 0.0,
        "route_margin": route_margin(model),
        "grads": {n: (p.grad if p.grad is not None else torch.zeros_like(p)).detach()
                  for n, p in model.named_parameters()},
    }


def grad_errors(got: dict[str, torch.Tensor], ref: dict[str, torch.Tensor], floor: float = 0.0) -> list[dict]:
    """Per tensor (ref's order): max_abs = max |got - ref|, ref_max = max |ref|, rel = max_abs /
    max(ref_max, floor * the largest |ref| anywhere) (floor > 0 keeps a ~0 gradient from dividing by ~0)."""
    gmax = max((r.abs().max().item() for r in ref.values() if r.numel()), default=0.0)
    rows = []
    for name, r in ref.items():
        g = got[name].to(r.device, torch.float64)
        r64 = r.to(torch.float64)
        max_abs = (g - r64).abs().max().item() if r.numel() else 0.0
        ref_max = r64.abs().max().item() if r.numel() else 0.0
        rows.append({"name": name, "max_abs": max_abs, "ref_max": ref_max,
                     "rel": max_abs / max(ref_max, floor * gmax, 1e-30)})
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m torch_ref.grads", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="+", help="dump directories, each with config.yaml, dump.json, params.bin")
    ap.add_argument("--dtypes", default="float32,float64", help="comma-separated: float32, float64")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: a deterministic summation order)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    dtypes = a.dtypes.split(",")
    for name in dtypes:
        if name not in DTYPES:
            ap.error(f"--dtypes: unknown '{name}' (valid: {', '.join(DTYPES)})")
    for d in a.dirs:
        try:
            cfg = load_config(os.path.join(d, "config.yaml"))
            meta, params, _ = read_dump(d)
            tr = meta["train"]
            shape = (tr["batch"], tr["seq"])
            ids = torch.tensor(tr["ids"], dtype=torch.long).view(shape)
            tgt = torch.tensor(tr["targets"], dtype=torch.long).view(shape)
            summary = {}
            for name in dtypes:
                torch.manual_seed(0)  # the peer's own initialisation is overwritten; fixed anyway
                r = loss_and_grads(peer(cfg.model, params, DTYPES[name]), ids, tgt)
                write_flat(os.path.join(d, f"torch_{name}.bin"), r["grads"], meta["params"])
                summary[name] = {k: r[k] for k in ("loss", "aux_loss", "route_margin")}
            with open(os.path.join(d, "torch.json"), "w") as f:
                json.dump(summary, f)
        except (OSError, ValueError, KeyError) as e:
            print(f"torch_ref.grads: {d}: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
