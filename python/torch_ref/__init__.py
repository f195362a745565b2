"""PyTorch peer of strata (bench/vs_pytorch.py)."""
