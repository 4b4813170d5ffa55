"""Small numerical helpers shared by the loss terms (no state, no host sync)."""

from __future__ import annotations

import torch

# The reference's `_masked_mean` (openfold/loss.py) regularises with 1e-4 whatever the
# term's configured eps; the supervised chi loss inherits it.
MASKED_MEAN_EPS = 1e-4


def softmax_cross_entropy_with_index(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-log softmax(logits)[target], i.e. cross entropy against a one-hot target.

    Equal to the reference's `-sum(one_hot(target) * log_softmax(logits))` term by term
    (a sum with a single non-zero addend is exact) without materialising the one-hot
    tensor and without `F.one_hot`, whose range check reads the data back to the host on
    some backends.

    logits: [..., C]; target: [...] integer class indices in [0, C). Returns [...].
    """
    log_probs = torch.log_softmax(logits, dim=-1)
    return -torch.gather(log_probs, -1, target.long().unsqueeze(-1)).squeeze(-1)


def sigmoid_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Element-wise binary cross entropy with logits (numerically stable form)."""
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")


def masked_mean(
    mask: torch.Tensor,
    value: torch.Tensor,
    dim: int | tuple[int, ...],
    eps: float = MASKED_MEAN_EPS,
) -> torch.Tensor:
    """sum(mask * value) / (eps + sum(mask)) over `dim`, `mask` broadcast to `value`."""
    mask = mask.expand(value.shape)
    return torch.sum(mask * value, dim=dim) / (eps + torch.sum(mask, dim=dim))


def resolution_filter(
    resolution: torch.Tensor, min_resolution: float, max_resolution: float, dtype: torch.dtype
) -> torch.Tensor:
    """1 where min <= resolution <= max (inclusive both ends, as the reference), else 0.

    NMR and distillation samples carry resolution 0 and are thereby excluded.
    """
    return ((resolution >= min_resolution) & (resolution <= max_resolution)).to(dtype)
