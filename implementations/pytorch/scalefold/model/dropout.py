"""Dropout with the mask shared along one axis (AlphaFold2 supplement, 1.11.6)."""

from __future__ import annotations

import torch
from torch import nn


class SharedDropout(nn.Module):
    """Dropout whose mask is broadcast along `shared_dim` of the input.

    Row-wise dropout on an MSA [*, S, N, c] or pair [*, N, N, c] tensor shares the mask
    across rows (dim -3); column-wise shares it across columns (dim -2).
    """

    def __init__(self, p: float, shared_dim: int) -> None:
        super().__init__()
        self.p = p
        self.shared_dim = shared_dim

    def keep_mask(self, x: torch.Tensor) -> torch.Tensor:
        """A fresh mask for x: x's shape with 1 on `shared_dim`, 1 with probability 1 - p."""
        shape = list(x.shape)
        shape[self.shared_dim] = 1
        return torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(1.0 - self.p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return x * self.keep_mask(x) / (1.0 - self.p)

    def residual(self, r: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """r + dropout(x): the Evoformer's residual update of the MSA or pair stream, one
        call so that a fused implementation can replace it (`residual_masked`,
        `scalefold.kernels`)."""
        if not self.training or self.p == 0.0:
            return r + x
        return self.residual_masked(r, x, self.keep_mask(x))

    def update(self, r: torch.Tensor, module: nn.Module, *args) -> torch.Tensor:
        """r + dropout(module(*args)). Where the dropout is the identity (evaluation) the
        module's `added_to(r, *args)` makes it, so that a fused implementation can add r
        inside the kernel that writes the update (`scalefold.kernels.ln_linear`)."""
        if not self.training or self.p == 0.0:
            return module.added_to(r, *args)
        return self.residual(r, module(*args))

    def residual_masked(self, r: torch.Tensor, x: torch.Tensor,
                        keep: torch.Tensor) -> torch.Tensor:
        """r + dropout(x) with a mask drawn by the caller (DAP draws the whole tensor's
        and keeps its block); keep: x's shape with 1 on `shared_dim`."""
        return r + x * keep / (1.0 - self.p)


def dropout_rowwise(p: float) -> SharedDropout:
    return SharedDropout(p, shared_dim=-3)


def dropout_columnwise(p: float) -> SharedDropout:
    return SharedDropout(p, shared_dim=-2)
