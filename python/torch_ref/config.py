"""The experiment config, as src/models/config.h declares it (same keys, same defaults, same
resolve()). Only what the PyTorch peer needs is validated here: strata's loader is the strict one,
and bench/vs_pytorch.py cross-checks the parameter counts of both sides. An unknown key under
model is an error (the peer could not build the same model); one under train, optim or data is
skipped, so that a key strata adds there (or to_yaml's full dump) does not stop the peer."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from . import yaml_lite


@dataclass
class AttentionConfig:
    heads: int = 4
    kv_heads: int = 0  # 0 -> heads
    head_dim: int = 0  # 0 -> d_model / heads
    rope_theta: float = 10000.0
    rope: bool = True  # gqa: False = no positional encoding (Jamba)
    rope_dims: int = 0  # gqa: channels per head that RoPE rotates (partial rotary); 0 -> head_dim
    rope_type: str = "default"  # default | linear | llama3 (transformers' rope_type)
    rope_factor: float = 1.0
    rope_low_freq_factor: float = 1.0
    rope_high_freq_factor: float = 4.0
    rope_original_max_positions: int = 8192
    kind: str = "gqa"  # gqa (covers mha/mqa) | mla (DeepSeek-V2/V3 multi-head latent attention)
    q_lora_rank: int = 0
    kv_lora_rank: int = 0  # mla; 0 -> 4 * head_dim
    qk_nope_head_dim: int = 0  # mla; 0 -> head_dim
    qk_rope_head_dim: int = 0  # mla; 0 -> head_dim // 4 * 2
    v_head_dim: int = 0  # mla; 0 -> head_dim
    rope_interleave: bool = True
    softmax_scale: float = 0.0
    window: int = 0  # sliding window: each query sees its last `window` positions; 0 = full causal


@dataclass
class MambaConfig:
    version: int = 2
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    head_dim: int = 32
    ngroups: int = 1
    chunk: int = 64
    dt_rank: int = 0  # 0 -> ceil(d_model / 16)
    dt_min: float = 0.001
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    conv_bias: bool = True
    bias: bool = False
    inner_norms: bool = False  # Mamba-1: RMSNorm on dt, B, C after x_proj (Jamba)
    selective: bool = True  # Mamba-1: False = dt, B, C learned constants, not functions of x (S4D-like)


@dataclass
class MlpConfig:
    hidden: int = 0


@dataclass
class MoeConfig:
    experts: int = 8
    top_k: int = 2
    shared_experts: int = 0
    hidden: int = 0
    aux_loss: float = 0.01
    renorm: bool = True


@dataclass
class ModelConfig:
    vocab: str = "bytes"
    vocab_size: int = 256
    d_model: int = 128
    pattern: str = "M*"
    repeat: int = 1
    tie_embeddings: bool = True
    norm_eps: float = 1e-5
    init_std: float = 0.02
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    mamba: MambaConfig = field(default_factory=MambaConfig)
    mlp: MlpConfig = field(default_factory=MlpConfig)
    moe: MoeConfig = field(default_factory=MoeConfig)


@dataclass
class TrainConfig:
    steps: int = 1000
    batch: int = 16
    seq: int = 128
    grad_accum: int = 1
    precision: str = "fp32"
    seed: int = 1
    eval_every: int = 100
    eval_batches: int = 8
    save_every: int = 200
    keep_checkpoints: int = 3
    log_every: int = 10
    device: str = "cpu"
    run_dir: str = ""


@dataclass
class OptimConfig:
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup: int = 100
    schedule: str = "cosine"
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    clip: float = 1.0


@dataclass
class DataConfig:
    kind: str = "text"
    path: str = ""
    val_fraction: float = 0.05


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    source_path: str = ""


def _round_up(x: int, m: int) -> int:
    return (x + m - 1) // m * m


def resolve(m: ModelConfig) -> None:
    """src/models/config.cpp resolve(): the derived sizes."""
    if m.attention.kv_heads == 0:
        m.attention.kv_heads = m.attention.heads
    if m.attention.head_dim == 0 and m.attention.heads > 0:
        m.attention.head_dim = m.d_model // m.attention.heads
    if m.attention.rope_dims == 0:
        m.attention.rope_dims = m.attention.head_dim
    if m.attention.kind == "mla":
        a = m.attention
        a.qk_nope_head_dim = a.qk_nope_head_dim or a.head_dim
        a.qk_rope_head_dim = a.qk_rope_head_dim or a.head_dim // 4 * 2
        a.v_head_dim = a.v_head_dim or a.head_dim
        a.kv_lora_rank = a.kv_lora_rank or 4 * a.head_dim
    if m.mlp.hidden == 0:
        m.mlp.hidden = _round_up(m.d_model * 8 // 3, 64)
    if m.moe.hidden == 0:
        m.moe.hidden = m.mlp.hidden
    if m.mamba.dt_rank == 0:
        m.mamba.dt_rank = math.ceil(m.d_model / 16)
    if m.vocab == "bytes":
        m.vocab_size = 256


def _coerce(value, current, where):
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected a boolean, got {value!r}")
        return value
    if isinstance(current, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return value
    if isinstance(current, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        return float(value)
    return "" if value is None else str(value)


def _apply(obj, data: dict, where: str, prefix: str = "") -> None:
    names = {f.name for f in dataclasses.fields(obj)}
    for k, v in (data or {}).items():
        key = f"{prefix}{k}"
        if (k not in names or k == "source_path") and prefix.split(".")[0] in ("train", "optim", "data"):
            continue
        if k not in names or k == "source_path":
            raise ValueError(f"{where}: unknown key '{key}' (valid: {', '.join(sorted(names - {'source_path'}))})")
        cur = getattr(obj, k)
        if dataclasses.is_dataclass(cur):
            if v is not None and not isinstance(v, dict):
                raise ValueError(f"{where}: '{key}' must be a mapping")
            _apply(cur, v, where, key + ".")
        else:
            setattr(obj, k, _coerce(v, cur, f"{where}: '{key}'"))


def load_config(path: str, overrides: list[str] | tuple = ()) -> Config:
    """Reads the YAML file, then applies `a.b=v` overrides (a subset of strata's Hydra grammar:
    plain set), then resolve()."""
    cfg = Config(source_path=path)
    _apply(cfg, yaml_lite.load(path), path)
    for ov in overrides:
        if "=" not in ov:
            raise ValueError(f"override '{ov}': expected key=value")
        key, val = ov.split("=", 1)
        parts = key.lstrip("+").split(".")
        target = cfg
        for p in parts[:-1]:
            target = getattr(target, p, None)
        current = getattr(target, parts[-1], None) if target is not None else None
        if isinstance(current, str):  # a string key takes its text as written unless quoted
            t = val.strip()
            value = yaml_lite.scalar(t) if len(t) >= 2 and t[0] == t[-1] and t[0] in "'\"" else t
        else:
            value = yaml_lite.flow(val, f"override '{ov}'")
        nested: dict = {}
        d = nested
        for p in parts[:-1]:
            d = d.setdefault(p, {})
        d[parts[-1]] = value
        _apply(cfg, nested, f"command-line override '{ov}'")
    resolve(cfg.model)
    return cfg
