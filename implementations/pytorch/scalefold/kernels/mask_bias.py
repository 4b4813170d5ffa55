"""Each mask's attention bias made once per forward instead of once per attention.

Every attention module turns its mask into an additive bias, inf · (mask − 1) (`MaskBias`:
two elementwise kernels on a GPU), and every Evoformer block receives the same MSA and
pair masks: 48 blocks × 4 attentions × 2 kernels, ~400 kernels an iteration that compute
the same few tensors again. The evaluation's CUDA graphs replay every one of them, and at
the short chains that make up most of the validation set a kernel costs its launch more
than its work (the screen's per-chain times fit ~0.08 s a chain whatever its length:
docs/perf-log/2026-12-06.md section 9). Shared through the forward's `WeightCasts`
scope, each (mask, transpose) pair is computed once; the values are the same bits, and no
gradient flows through a mask.
"""

from __future__ import annotations

import torch
from torch import nn

from scalefold.kernels._autocast import WeightCasts
from scalefold.kernels.swap import swap
from scalefold.model.attention import MaskBias


class SharedMaskBias:
    """`MaskBias` mixin: the bias of a mask made once per `weight_casts` scope."""

    weight_casts: WeightCasts

    def forward(self, mask: torch.Tensor, transpose: bool = False) -> torch.Tensor:
        plain = super().forward

        def make() -> torch.Tensor:
            # Transposed, the plain bias keeps the transposed strides, and the attention
            # core copies it row-major in every block (`_rows_contiguous`): made
            # contiguous here, once (the same values).
            return plain(mask, transpose).contiguous()

        return self.weight_casts.derived(("mask_bias", transpose, self.inf), mask, make)


def share_mask_biases(model: nn.Module, casts: WeightCasts) -> nn.Module:
    """Give every MaskBias of `model` the bias shared through `casts`. Returns `model`."""
    swap(model, MaskBias, SharedMaskBias, weight_casts=casts)
    return model
