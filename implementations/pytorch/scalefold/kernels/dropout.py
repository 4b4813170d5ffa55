"""The Evoformer's residual update r + dropout(x) as one elementwise kernel each way.

Eager, `r + x * keep / (1 - p)` is three passes over the stream's full size (multiply,
divide, add: 7 reads and writes of it, the MSA stream being [*, 512, 256, 256] at the
benchmark's shapes) and its backward two (the divide's and the multiply's). `addcmul`
computes r + x · keep · 1/(1 - p) in one pass (3 reads and writes) and its backward in one
(dx = dr · keep / (1 - p) on the mask's small size, then one broadcast multiply; dr passes
through). The mask is drawn exactly as the plain module draws it (same shape, dtype and
generator call), so both draw the same masks; only the rounding differs: one rounding to
the output dtype (the eager form rounds x · keep / (1 - p) to bf16 before the add), and a
multiplication by the float32 reciprocal instead of a division.
"""

from __future__ import annotations

import torch
from torch import nn

from scalefold.kernels.swap import swap
from scalefold.model.dropout import SharedDropout


class FusedResidualDropout(SharedDropout):
    def residual(self, r: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return r + x
        shape = list(x.shape)
        shape[self.shared_dim] = 1
        keep = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(1.0 - self.p)
        return torch.addcmul(r, x, keep, value=1.0 / (1.0 - self.p))


def swap_residual_dropout(model: nn.Module) -> nn.Module:
    """Every `SharedDropout`'s residual update as one kernel each way; returns `model`."""
    swap(model, SharedDropout, FusedResidualDropout)
    return model
