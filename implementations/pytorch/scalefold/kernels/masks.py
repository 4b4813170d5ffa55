"""Attention mask biases built once per forward and shared by the blocks.

Every block of a stack hands its attention modules the same mask tensors (the MSA mask,
the pair mask), and each module turns its mask into an additive bias, inf · (mask − 1):
two elementwise kernels, and for the transposed masks of column-wise attention (MSA
columns, the ending-node triangle) a copy of the transposed bias in the attention kernel's
wrapper. At the benchmark's shapes that is ~430 small kernels a forward that recompute
the same few tensors. `SharedMaskBias` builds each (mask, transpose) bias once per scope
of the forward's cache (`WeightCasts.constant`), the transposed ones laid out row-major
once, and hands the same tensor to every block: the same values, bit for bit.
"""

from __future__ import annotations

import torch
from torch import nn

from scalefold.kernels._autocast import WeightCasts
from scalefold.kernels.swap import swap
from scalefold.model.attention import MaskBias


class SharedMaskBias(MaskBias):
    """`MaskBias` built once per scope of `cache` for each mask it sees (a mask is known
    by its memory and geometry; the cache keeps it alive, so no other tensor can take its
    place, and a mask written in place since is built again)."""

    cache: WeightCasts | None = None

    def _build(self, mask: torch.Tensor, transpose: bool):
        bias = super().forward(mask, transpose)
        if transpose:  # the kernels read rows: copy once here, not in every block
            bias = bias.contiguous()
        return mask, _version(mask), bias

    def forward(self, mask: torch.Tensor, transpose: bool = False) -> torch.Tensor:
        if self.cache is None or mask.requires_grad:
            return super().forward(mask, transpose)
        key = ("mask_bias", self.inf, transpose, mask.device, mask.dtype, mask.data_ptr(),
               tuple(mask.shape), mask.stride())
        _, version, bias = self.cache.constant(key, lambda: self._build(mask, transpose))
        if version != _version(mask):
            return super().forward(mask, transpose)
        return bias


def _version(t: torch.Tensor) -> int | None:
    # Inference tensors track no versions (and cannot be written outside inference mode).
    return None if t.is_inference() else t._version


def swap_mask_biases(model: nn.Module, cache: WeightCasts) -> nn.Module:
    """Every `MaskBias` of `model` becomes a `SharedMaskBias` sharing `cache` (whose scope
    the forward opens), in place. Returns `model`."""
    swap(model, MaskBias, SharedMaskBias, cache=cache)
    return model
