"""The Python `safetensors` package as an oracle for tests/test_safetensors.cpp.

  safetensors_oracle.py write DIR   writes DIR/np.safetensors (safetensors.numpy: F32 x, F16 and F64
                                    of it, I64 ids) and DIR/pt.safetensors (safetensors.torch: F32 x,
                                    BF16 of it, a scalar, an empty tensor), conversions by numpy/torch,
                                    and DIR/sharded/ (huggingface_hub: x as layers.{0..7}.w, 4 shards)
  safetensors_oracle.py read FILE   prints {"metadata": {...}, "tensors": {name: {"dtype", "shape",
                                    "hex": stored bytes, "f32hex": values as float32 bytes}}}

x mixes edge cases of the float16/bfloat16 conversions (ties, overflow, subnormals, inf, nan) with
random values over a wide range, so the C++ side can compare its own rounding bit for bit."""
import json
import os
import sys

import numpy as np
import torch
from huggingface_hub import save_torch_state_dict
from safetensors import safe_open
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import save_file as save_torch

DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
          torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
          torch.bool: "BOOL"}


def edge_values():
    s = [0.0, -0.0, 1.0, -1.0, 1 / 3, np.pi, 65504.0, 65519.0, 65520.0, 65536.0, 1e5, -7e4, 3.4e38, 1e-40,
         2.0 ** -14, 2.0 ** -14 - 2.0 ** -24, 2.0 ** -24, 2.0 ** -25, 3 * 2.0 ** -26, 2.0 ** -26, 1.5 * 2.0 ** -24,
         2.5 * 2.0 ** -24, 1 + 2.0 ** -11, 1 + 3 * 2.0 ** -11, 1 + 2.0 ** -8, 1 + 3 * 2.0 ** -8, 1 + 2.0 ** -9,
         np.inf, -np.inf, np.nan]
    return np.array(s, dtype=np.float32)


def make_x():
    rng = np.random.default_rng(1234)
    r = rng.standard_normal(994) * 10.0 ** rng.uniform(-9, 6, 994)
    return np.concatenate([edge_values(), r.astype(np.float32)]).astype(np.float32)  # 1024 values


def write(d):
    x = make_x()
    with np.errstate(over="ignore"):  # values past 65504 become inf in float16, as intended
        x_f16 = x.astype(np.float16)
    save_numpy({"x": x.reshape(32, 32), "x_f16": x_f16, "x_f64": x.astype(np.float64),
                "ids": np.arange(-3, 5, dtype=np.int64)}, os.path.join(d, "np.safetensors"),
               metadata={"source": "numpy", "n": "1024"})
    t = torch.from_numpy(x)
    save_torch({"x": t, "x_bf16": t.to(torch.bfloat16).reshape(4, 256), "scalar": torch.tensor(2.5),
                "empty": torch.zeros(0, 3, dtype=torch.float16)}, os.path.join(d, "pt.safetensors"),
               metadata={"source": "torch"})
    # A sharded directory as huggingface_hub (and so transformers' save_pretrained) writes it.
    parts = {f"layers.{i}.w": t[i * 128:(i + 1) * 128].reshape(8, 16).clone() for i in range(8)}
    os.makedirs(os.path.join(d, "sharded"), exist_ok=True)
    save_torch_state_dict(parts, os.path.join(d, "sharded"), max_shard_size=1500)


def as_hex(t):
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes().hex() if t.numel() else ""


def read(path):
    out = {"tensors": {}}
    with safe_open(path, framework="pt") as f:
        out["metadata"] = f.metadata() or {}
        for k in f.keys():
            t = f.get_tensor(k)
            out["tensors"][k] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "hex": as_hex(t),
                                 "f32hex": as_hex(t.float()) if t.is_floating_point() else ""}
    print(json.dumps(out))


if __name__ == "__main__":
    {"write": write, "read": read}[sys.argv[1]](sys.argv[2])
