"""The autocast dtype in effect for a tensor's device, for kernels that cast by hand."""

from __future__ import annotations

import torch


def autocast_dtype(x: torch.Tensor) -> torch.dtype | None:
    """The autocast dtype for x's device if autocast is on there; None otherwise
    (devices without autocast, like `meta`, included)."""
    dev = x.device.type
    # CPU and CUDA always have autocast; asking only for other devices keeps
    # `is_autocast_available` (which Dynamo in torch 2.11 cannot trace: a graph break in
    # every compiled module with a LayerNorm) out of compiled code.
    if dev not in ("cpu", "cuda") and not torch.amp.is_autocast_available(dev):
        return None
    if not torch.is_autocast_enabled(dev):
        return None
    return torch.get_autocast_dtype(dev)
