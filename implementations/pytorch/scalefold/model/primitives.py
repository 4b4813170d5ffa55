"""Linear, LayerNorm and the sigmoid gate: the leaf layers of the network.

They are plain modules so that faster implementations (Triton LayerNorm and gate, fused
projections) can replace them from outside the model without touching its code: see
`scalefold.kernels`. Initialisers follow the AlphaFold2 supplement, section 1.11.4.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

InitName = Literal["default", "relu", "glorot", "gating", "final"]


def _truncated_normal_(weight: torch.Tensor, scale: float) -> None:
    # LeCun/He truncated normal: std of the *truncated* distribution equals
    # sqrt(scale / fan_in), hence the correction factor for truncation at 2 sigma.
    fan_in = weight.shape[1]
    std = math.sqrt(scale / max(1, fan_in)) / 0.87962566103423978
    with torch.no_grad():
        nn.init.trunc_normal_(weight, mean=0.0, std=1.0, a=-2.0, b=2.0)
        weight.mul_(std)


class Linear(nn.Linear):
    """`nn.Linear` with AlphaFold's initialisation schemes."""

    def __init__(
        self, in_dim: int, out_dim: int, bias: bool = True, init: InitName = "default"
    ) -> None:
        self._init_name = init
        super().__init__(in_dim, out_dim, bias=bias)

    def reset_parameters(self) -> None:
        init = getattr(self, "_init_name", "default")
        if init == "default":
            _truncated_normal_(self.weight, 1.0)
        elif init == "relu":
            _truncated_normal_(self.weight, 2.0)
        elif init == "glorot":
            nn.init.xavier_uniform_(self.weight)
        elif init in ("gating", "final"):
            nn.init.zeros_(self.weight)
        else:
            raise ValueError(f"unknown Linear init {init!r}")
        if self.bias is not None:
            with torch.no_grad():
                self.bias.fill_(1.0 if init == "gating" else 0.0)


class LayerNorm(nn.Module):
    """LayerNorm over the last dimension (eps 1e-5, as the reference and Haiku use)."""

    def __init__(self, c: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.c = c
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (self.c,), self.weight, self.bias, self.eps)


class SigmoidGate(nn.Module):
    """x · sigmoid(g): the gate on attention outputs and triangle-multiplication updates.

    Parameter-free (nothing in the state dict); a module so that a fused kernel can take
    its place from outside (`scalefold.kernels.swap_gates`).
    """

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(g)
