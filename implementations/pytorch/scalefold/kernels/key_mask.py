"""The triangle attentions' key mask folded into their triangle bias, without gradients.

A triangle attention adds two biases to its logits: each row's key mask [*, R, 1, 1, K]
and the triangle bias [*, 1, H, Q, K] shared by every row. The Triton forward takes the
first as a row it loads and adds to every tile (`FlashConfig.row_bias`) and the second as
a tile that starts the QKᵀ accumulator; with the mask folded into the tile it runs the
one-bias form: 370 instead of 419 instructions an iteration of its loop (sm90, Triton
3.6: docs/evidence/2026-12-04_sass/fwd_bias_forms_triton36.txt, "pair tile only" against
"mask row + pair tile"), and the mask row's loads go. The fold's add writes the bias
row-major, the copy the kernel path made anyway (`_rows_contiguous`); one small
reduction of the mask over its rows is the only kernel it adds.

Why one key mask serves every row: the mask is the pair mask, seq_mask_i · seq_mask_k
(`AlphaFold.forward`), so every real row masks the same keys, seq_mask_k, which is the
mask's maximum over the rows. Padded rows (seq_mask_i = 0) mask every key in the plain
module and only the padded keys here: their outputs change, and they reach no real
position (every later consumer masks padded rows or keys). On real rows the logits are
the same numbers: an unmasked key adds 0 in both forms, a masked one gets -inf in effect
and weight 0. The outputs are the same bits in the interpreter and in the eager core; on
a GPU the two compiled forms of the kernel round differently (fp32: 1.8e-7 at most on an
H100, docs/evidence/2026-12-06_h100_s22). With gradients the plain biases are kept (the
bias gradient sums over every row, padded ones included).
"""

from __future__ import annotations

import torch
from torch import nn

from scalefold.kernels._autocast import WeightCasts
from scalefold.kernels.swap import swap
from scalefold.model.pair import TriangleAttention


class FoldedKeyMaskTriangleAttention:
    """`TriangleAttention` mixin: without gradients the rows' key mask folded into the
    triangle bias (one bias [*, 1, H, Q, K], contiguous, in the triangle bias's dtype or
    `folded_dtype`)."""

    weight_casts: WeightCasts | None = None
    # fp32: the same values (each a 16-bit value, or a masked key's -inf in effect), so
    # that the attention's loop loads the tile without converting each value
    # (`FlashConfig.pipelined_bias_loads`); twice the bytes
    folded_dtype: torch.dtype | None = None

    def biases(self, mask_bias: torch.Tensor, tri_bias: torch.Tensor) -> list[torch.Tensor]:
        if torch.is_grad_enabled():
            return super().biases(mask_bias, tri_bias)
        # mask_bias: [*, R, 1, 1, K] -> the real rows' keys [*, 1, 1, 1, K]; in the
        # triangle bias's dtype, where -inf in effect stays -inf in effect (weight 0)
        def keys_of() -> torch.Tensor:
            return mask_bias.amax(dim=-4, keepdim=True).to(tri_bias.dtype)

        # (with the shared mask biases every block passes the same mask_bias: one
        # reduction a forward, not one a block)
        keys = (keys_of() if self.weight_casts is None else self.weight_casts.derived(
            ("folded_keys", tri_bias.dtype), mask_bias, keys_of))
        shape = torch.broadcast_shapes(tri_bias.shape, keys.shape)
        # tri_bias + 0 is exact; written row-major, as the kernel reads it (the add of a
        # permuted view would otherwise keep the heads innermost)
        out = torch.empty(shape, dtype=self.folded_dtype or tri_bias.dtype,
                          device=tri_bias.device)
        return [torch.add(tri_bias, keys, out=out)]  # [*, 1, H, Q, K]


def swap_folded_key_masks(model: nn.Module, casts: WeightCasts | None = None,
                          dtype: torch.dtype | None = None) -> nn.Module:
    """Give every TriangleAttention of `model` the folded key mask; with `casts`, the
    reduction of a shared mask bias to its keys made once per scope; with `dtype`, the
    folded bias written in it. Returns `model`."""
    swap(model, TriangleAttention, FoldedKeyMaskTriangleAttention, weight_casts=casts,
         folded_dtype=dtype)
    return model
