#!/usr/bin/env python3
"""strata's CUDA kernels vs PyTorch on the same GPU and shapes, side by side.

One table function per op (TABLES below): each runs strata's bench executable for the op (JSON
lines), times the PyTorch peer on the same shapes and returns rows; main prints them with the speed
ratio torch_ms / strata_ms (above 1: strata is faster).

  python bench/cuda_vs_torch.py                     # every op, default shapes
  python bench/cuda_vs_torch.py attention --T 1024,4096 --hd 128
  python bench/cuda_vs_torch.py --bin-dir build/bench --json results.json
  python bench/cuda_vs_torch.py gemm --sizes 4096 --gemm-dtypes bf16 --iters 5

Needs a CUDA GPU and torch (python/requirements-bench.txt). Ops:
  attention  build/bench/cuda_attention vs torch.nn.functional.scaled_dot_product_attention, causal.
             strata is fp32; torch's flash backend takes only fp16/bf16, so two peers are timed:
             SDPA in fp32 (PyTorch picks the memory-efficient or math backend) and SDPA in bf16
             restricted to the flash backend (FlashAttention-2), and SDPA in bf16 restricted to
             cuDNN's fused attention (SDPBackend.CUDNN_ATTENTION: "n/a" where this torch, cuDNN or
             shape has none). strata's rows: attention_fwd / attention_bwd / attention_decode (fp32,
             SIMT) and attention_fwd_bf16 (WMMA tensor cores, fp32 softmax): compare the fp32 rows
             with torch_fp32 and the bf16 row with the bf16 peers (zero inputs in strata's bf16 row:
             the timing does not depend on them).
  scan       build/bench/cuda_ssm --ops scan (Mamba-1 selective scan, fp32) vs python/torch_ref's
             selective_scan_ref (the eager peer of bench/vs_pytorch.py: a Python loop over T) and,
             when the mamba_ssm package is importable, its CUDA selective_scan_fn (the real target).
  ssd        build/bench/cuda_ssm --ops ssd (Mamba-2 SSD, fp32) vs torch_ref's ssd_minimal_discrete
             (chunked einsums) and, when importable, mamba_ssm's Triton mamba_chunk_scan_combined.
             Backward rows time the backward alone (autograd.grad on a retained graph).
  gemm       build/bench/cuda_gemm (cuBLASLt through strata::cuda::gemm / linear_forward /
             gemm_bf16) vs torch.matmul on the same shapes: squares (--sizes) and the linear layers
             of a ~1B model (x @ W^T with W [out, in]); fp32 and tf32 with torch's fp32 matmul
             precision ("highest" / "high": TF32) matching strata's set_allow_tf32, bf16 with bf16
             operands (torch's output is bf16, strata's fp32: torch writes half the bytes).
The strata TFLOP/s column counts FLOPs as each bench executable does (see its header).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ops", nargs="*", help=f"ops to compare (default: all of {', '.join(TABLES)})")
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, "build", "bench"), help="where the bench executables are")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--T", default="1024,2048,4096,8192,16384", help="sequence lengths (comma separated)")
    ap.add_argument("--hd", default="64,128", help="head dims (comma separated)")
    ap.add_argument("--gqa", type=int, default=1, help="query heads per kv head")
    ap.add_argument("--sizes", default="1024,2048,4096,8192", help="gemm: square sizes (comma separated)")
    ap.add_argument("--gemm-shapes", default="square,linear", help="gemm: square and/or linear (a ~1B model's)")
    ap.add_argument("--gemm-dtypes", default="fp32,tf32,bf16", help="gemm: any of fp32, tf32, bf16")
    ap.add_argument("--json", metavar="FILE", help="also write every row to FILE")
    return ap.parse_args(argv)


def strata_rows(exe, args, extra):
    """Runs a strata bench executable with --json and returns its JSON lines."""
    cmd = [exe, "--json", "--iters", str(args.iters)] + extra
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stdout + p.stderr)
        raise SystemExit(f"{' '.join(cmd)} failed with {p.returncode}")
    rows = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    if not rows:
        raise SystemExit(f"{' '.join(cmd)} printed no results:\n{p.stdout}")
    return rows


def cuda_time_ms(fn, iters):
    """Mean milliseconds of fn() over iters after one warm-up, timed with CUDA events."""
    import torch

    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters


def sdpa_backends(which):
    """SDPA backends for a peer: "flash", "cudnn" (None where this torch has no such backend), or "any"."""
    from torch.nn.attention import SDPBackend

    if which == "flash":
        return [SDPBackend.FLASH_ATTENTION]
    cudnn = getattr(SDPBackend, "CUDNN_ATTENTION", None)  # torch >= 2.3
    if which == "cudnn":
        return [cudnn] if cudnn is not None else None
    return [b for b in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, cudnn, SDPBackend.MATH) if b]


def torch_attention_ms(op, B, T, Hq, Hkv, hd, dtype, backend, iters):
    """The PyTorch peer of one strata attention row: SDPA on [B, H, T, hd] views of [B, T, H, hd],
    restricted to `backend` (sdpa_backends); None when that backend does not exist here."""
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import sdpa_kernel

    backends = sdpa_backends(backend)
    if backends is None:
        return None

    dev = "cuda"
    if op == "attention_fwd_bf16":
        op = "attention_fwd"  # the same forward; the peers below are timed in both dtypes anyway
    Tq = 1 if op == "attention_decode" else T
    q = torch.randn(B, Tq, Hq, hd, device=dev, dtype=dtype).transpose(1, 2)
    k = torch.randn(B, T, Hkv, hd, device=dev, dtype=dtype).transpose(1, 2)
    v = torch.randn(B, T, Hkv, hd, device=dev, dtype=dtype).transpose(1, 2)
    causal = op != "attention_decode"  # a decode query sees the whole cache
    gqa = dict(enable_gqa=True) if Hkv != Hq else {}
    with sdpa_kernel(backends):
        if op in ("attention_fwd", "attention_decode"):
            with torch.no_grad():
                return cuda_time_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal, **gqa), iters)
        # backward alone: forward + backward minus forward, as strata times its backward separately
        qr, kr, vr = (t.detach().requires_grad_() for t in (q, k, v))
        out = F.scaled_dot_product_attention(qr, kr, vr, is_causal=True, **gqa)
        dout = torch.randn_like(out)
        return cuda_time_ms(lambda: torch.autograd.grad(out, (qr, kr, vr), dout, retain_graph=True), iters)


def table_attention(args):
    import torch

    exe = os.path.join(args.bin_dir, "cuda_attention")
    rows = []
    for r in strata_rows(exe, args, ["--T", args.T, "--hd", args.hd, "--gqa", str(args.gqa)]):
        shape = dict(B=r["B"], T=r["T"], Hq=r["Hq"], Hkv=r["Hkv"], hd=r["hd"])
        peers = {}
        for name, dtype, backend in (("torch_fp32", "float32", "any"), ("torch_bf16_flash", "bfloat16", "flash"),
                                     ("torch_bf16_cudnn", "bfloat16", "cudnn")):
            try:
                peers[name] = torch_attention_ms(r["op"], **shape, dtype=getattr(torch, dtype), backend=backend,
                                                 iters=args.iters)
            except RuntimeError as e:  # e.g. out of memory, or no kernel of that backend for this shape
                print(f"  {r['op']} {shape} {name}: {(str(e).splitlines() or ['?'])[0]}", file=sys.stderr)
                peers[name] = None
            torch.cuda.empty_cache()
        flops = r["tflops"] * 1e9 * r["ms"] if r.get("tflops") else None
        rows.append(dict(op=r["op"], shape=shape, strata_ms=r["ms"], flops=flops,
                         **{f"{k}_ms": v for k, v in peers.items()}))
    return rows


def torch_ref_module():
    """python/torch_ref/model.py (selective_scan_ref, ssd_minimal_discrete)."""
    sys.path.insert(0, os.path.join(ROOT, "python"))
    from torch_ref import model

    return model


def fwd_bwd_ms(run, inputs, backward, iters):
    """Forward time of run(*inputs), or with backward=True the time of its backward alone."""
    import torch

    if not backward:
        with torch.no_grad():
            return cuda_time_ms(lambda: run(*inputs), iters)
    leaves = [t.detach().requires_grad_() for t in inputs]
    out = run(*leaves)
    dout = torch.randn_like(out)
    return cuda_time_ms(lambda: torch.autograd.grad(out, leaves, dout, retain_graph=True), iters)


def table_scan(args):
    import torch

    ref = torch_ref_module()
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except ImportError:
        selective_scan_fn = None
    exe = os.path.join(args.bin_dir, "cuda_ssm")
    rows = []
    for r in strata_rows(exe, args, ["--ops", "scan", "--T", args.T]):
        B, T, D, N = r["B"], r["T"], r["D"], r["N"]
        shape = dict(B=B, T=T, D=D, N=N)
        if r["op"] == "selective_scan_step":
            rows.append(dict(op=r["op"], shape=shape, strata_ms=r["ms"]))
            continue
        dev = "cuda"
        # The peers take [b, d, l]; the inputs are made in that layout (no transposes timed).
        u, delta, z = (torch.randn(B, D, T, device=dev) for _ in range(3))
        delta = delta * 0.5
        A = -torch.empty(D, N, device=dev).uniform_(0.2, 2.0)
        Bm, Cm = torch.randn(B, N, T, device=dev), torch.randn(B, N, T, device=dev)
        Dsk, bias = torch.randn(D, device=dev), -torch.rand(D, device=dev) * 3
        backward = r["op"] == "selective_scan_bwd"
        peers = {}
        fns = {"torch_ref": ref.selective_scan_ref}
        if selective_scan_fn is not None:
            fns["mamba_ssm"] = selective_scan_fn
        for name, fn in fns.items():
            def run(u, delta, A, Bm, Cm, Dsk, z, bias, fn=fn):
                return fn(u, delta, A, Bm, Cm, Dsk, z, bias, delta_softplus=True)
            try:
                iters = min(args.iters, 3) if name == "torch_ref" else args.iters  # a Python loop over T
                peers[name] = fwd_bwd_ms(run, (u, delta, A, Bm, Cm, Dsk, z, bias), backward, iters)
            except RuntimeError as e:  # e.g. out of memory: selective_scan_ref holds [b, d, l, n]
                print(f"  {r['op']} {shape} {name}: {str(e).splitlines()[0]}", file=sys.stderr)
                peers[name] = None
            torch.cuda.empty_cache()
        rows.append(dict(op=r["op"], shape=shape, strata_ms=r["ms"], **{f"{k}_ms": v for k, v in peers.items()}))
    return rows


def table_ssd(args):
    import torch
    import torch.nn.functional as F

    ref = torch_ref_module()
    try:
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
    except ImportError:
        mamba_chunk_scan_combined = None
    exe = os.path.join(args.bin_dir, "cuda_ssm")
    rows = []
    for r in strata_rows(exe, args, ["--ops", "ssd", "--T", args.T]):
        B, T, H, P, G, N, chunk = (r[k] for k in ("B", "T", "H", "P", "G", "N", "chunk"))
        shape = dict(B=B, T=T, H=H, P=P, G=G, N=N)
        if r["op"] == "ssd_step":
            rows.append(dict(op=r["op"], shape=shape, strata_ms=r["ms"]))
            continue
        dev = "cuda"
        x = torch.randn(B, T, H, P, device=dev)
        dt_raw = torch.randn(B, T, H, device=dev) * 0.5
        A = -torch.empty(H, device=dev).uniform_(0.3, 2.0)
        Bm, Cm = torch.randn(B, T, G, N, device=dev), torch.randn(B, T, G, N, device=dev)
        Dsk, bias = torch.randn(H, device=dev), -1 - 2 * torch.rand(H, device=dev)

        def run_ref(x, dt_raw, A, Bm, Cm, Dsk, bias):
            # Everything strata's ssd_forward does: softplus, dt scaling, the chunked SSD, the D skip.
            dt = F.softplus(dt_raw + bias)
            y, _ = ref.ssd_minimal_discrete(x * dt[..., None], A * dt, Bm, Cm, chunk)
            return y + x * Dsk[:, None]

        fns = {"torch_ref": run_ref}
        if mamba_chunk_scan_combined is not None:
            fns["mamba_ssm"] = lambda x, dt_raw, A, Bm, Cm, Dsk, bias: mamba_chunk_scan_combined(
                x, dt_raw, A, Bm, Cm, chunk, D=Dsk, dt_bias=bias, dt_softplus=True)
        backward = r["op"] == "ssd_bwd"
        peers = {}
        for name, fn in fns.items():
            try:
                peers[name] = fwd_bwd_ms(fn, (x, dt_raw, A, Bm, Cm, Dsk, bias), backward, args.iters)
            except RuntimeError as e:
                print(f"  {r['op']} {shape} {name}: {str(e).splitlines()[0]}", file=sys.stderr)
                peers[name] = None
            torch.cuda.empty_cache()
        rows.append(dict(op=r["op"], shape=shape, strata_ms=r["ms"], **{f"{k}_ms": v for k, v in peers.items()}))
    return rows


def table_gemm(args):
    import torch

    exe = os.path.join(args.bin_dir, "cuda_gemm")
    extra = ["--sizes", args.sizes, "--shapes", args.gemm_shapes, "--dtypes", args.gemm_dtypes]
    rows = []
    precision_before = torch.get_float32_matmul_precision()
    for r in strata_rows(exe, args, extra):
        M, N, K, dtype = r["M"], r["N"], r["K"], r["dtype"]
        shape = dict(name=r["name"], M=M, N=N, K=K)
        try:
            torch.set_float32_matmul_precision("high" if dtype == "tf32" else "highest")  # high: TF32
            tdtype = torch.bfloat16 if dtype == "bf16" else torch.float32
            a = torch.rand(M, K, device="cuda", dtype=tdtype) * 2 - 1  # uniform in [-1, 1) as strata's
            if r.get("weight_layout"):  # x @ W^T with W [N, K], as a linear layer stores it
                w = torch.rand(N, K, device="cuda", dtype=tdtype) * 2 - 1
                run = lambda: torch.matmul(a, w.t())
            else:
                b = torch.rand(K, N, device="cuda", dtype=tdtype) * 2 - 1
                run = lambda: torch.matmul(a, b)
            with torch.no_grad():
                peer = cuda_time_ms(run, args.iters)
        except RuntimeError as e:  # e.g. out of memory
            print(f"  gemm {shape} {dtype}: {(str(e).splitlines() or ['?'])[0]}", file=sys.stderr)
            peer = None
        finally:
            torch.set_float32_matmul_precision(precision_before)
            a = w = b = run = None
            torch.cuda.empty_cache()
        rows.append(dict(op=f"gemm_{dtype}", shape=shape, strata_ms=r["ms"], flops=2.0 * M * N * K,
                         torch_matmul_ms=peer))
    return rows


# One table function per op.
TABLES = {
    "attention": table_attention,
    "scan": table_scan,
    "ssd": table_ssd,
    "gemm": table_gemm,
}


def fmt_ms(x):
    return f"{x:10.3f}" if x is not None else f"{'n/a':>10}"


def fmt_tflops(flops, ms):
    return f"{flops / ms / 1e9:12.2f}" if flops and ms else f"{'-':>12}"


def fmt_ratio(torch_ms, strata_ms):
    return f"{torch_ms / strata_ms:8.2f}" if torch_ms is not None and strata_ms else f"{'-':>8}"


def print_rows(rows):
    peers = sorted({k[:-3] for r in rows for k in r if k.endswith("_ms") and k != "strata_ms"})
    with_flops = any(r.get("flops") for r in rows)
    head = (f"{'op':<18} {'shape':<40} {'strata ms':>10}" + (f" {'strata TFLOP/s':>12}" if with_flops else "") +
            "".join(f" {p + ' ms':>22} {'ratio':>8}" for p in peers))
    print(head)
    print("-" * len(head))
    for r in rows:
        shape = " ".join(f"{k}={v}" for k, v in r["shape"].items())
        line = f"{r['op']:<18} {shape:<40} {fmt_ms(r['strata_ms'])}"
        if with_flops:
            line += f" {fmt_tflops(r.get('flops'), r['strata_ms'])}"
        for p in peers:
            line += f" {fmt_ms(r.get(p + '_ms')):>22} {fmt_ratio(r.get(p + '_ms'), r['strata_ms'])}"
        print(line)
    print("ratio = torch ms / strata ms (above 1: strata is faster); n/a: that peer did not run (see stderr)")


def main(argv=None):
    args = parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("cuda_vs_torch: torch sees no CUDA device")
    ops = args.ops or list(TABLES)
    unknown = [o for o in ops if o not in TABLES]
    if unknown:
        raise SystemExit(f"unknown op(s) {unknown}; known: {list(TABLES)}")
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}")
    all_rows = []
    for op in ops:
        rows = TABLES[op](args)
        print_rows(rows)
        print()
        all_rows += rows
    if args.json:
        with open(args.json, "w") as f:
            json.dump(all_rows, f, indent=1)


if __name__ == "__main__":
    main()
