"""Whether the Triton kernels can run on a tensor, and Triton itself if it is importable.

Triton runs CUDA tensors natively and CPU tensors only in its interpreter
(TRITON_INTERPRET=1, read by Triton when a kernel is first defined), which the CPU tests
use. Anywhere else the swapped modules fall back to the PyTorch path, so a model with
kernels applied still runs on a CPU-only machine without Triton.
"""

from __future__ import annotations

import os

import torch

try:  # Triton is an optional dependency (the `gpu` extra)
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the environment
    triton = None
    tl = None

HAS_TRITON = triton is not None


def interpreting() -> bool:
    """True when Triton kernels execute in the CPU interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_usable(x: torch.Tensor) -> bool:
    """Can a Triton kernel process this tensor here?"""
    if not HAS_TRITON:
        return False
    if x.device.type == "cuda":
        return True
    return x.device.type == "cpu" and interpreting()


def next_pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def dot_precision(x: torch.Tensor) -> str:
    """`tl.dot`'s input precision for x's dtype: IEEE fp32 where PyTorch's own fp32
    matmuls would not use TF32 (so the kernels match them), else "tf32" (bf16 ignores it)."""
    if x.dtype == torch.float32 and not torch.backends.cuda.matmul.allow_tf32:
        return "ieee"
    return "tf32"
