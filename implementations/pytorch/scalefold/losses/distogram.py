"""Distogram loss (AF2 suppl. 1.9.8): cross entropy of binned Cβ-Cβ distances."""

from __future__ import annotations

import torch

from scalefold.losses._common import softmax_cross_entropy_with_index


def distogram_squared_boundaries(
    min_bin: float = 2.3125,
    max_bin: float = 21.6875,
    num_bins: int = 64,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """[num_bins - 1] squared bin edges; the first and last bins are open-ended."""
    return torch.linspace(min_bin, max_bin, num_bins - 1, device=device, dtype=dtype) ** 2


def distogram_loss(
    logits: torch.Tensor,
    pseudo_beta: torch.Tensor,
    pseudo_beta_mask: torch.Tensor,
    min_bin: float = 2.3125,
    max_bin: float = 21.6875,
    num_bins: int = 64,
    eps: float = 1e-8,
    squared_boundaries: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over valid residue pairs of the distogram cross entropy.

    Args:
        logits: [*, N, N, num_bins].
        pseudo_beta: [*, N, 3] true Cβ (Cα for glycine) positions.
        pseudo_beta_mask: [*, N].
        eps: denominator regulariser (reference 1e-8; AlphaFold 1e-6).
        squared_boundaries: precomputed `distogram_squared_boundaries` (a buffer).

    Returns:
        [*].
    """
    if logits.shape[-1] != num_bins:
        raise ValueError(f"expected {num_bins} distogram bins, got {logits.shape[-1]}")
    dtype = logits.dtype
    if squared_boundaries is None:
        squared_boundaries = distogram_squared_boundaries(
            min_bin, max_bin, num_bins, logits.device, dtype
        )
    positions = pseudo_beta.to(dtype)
    diff = positions[..., :, None, :] - positions[..., None, :, :]
    sq_dists = torch.sum(diff * diff, dim=-1, keepdim=True)  # [*, N, N, 1]
    # Bin index = number of edges strictly below the distance (as the reference).
    true_bins = torch.sum(sq_dists > squared_boundaries, dim=-1)  # [*, N, N]

    errors = softmax_cross_entropy_with_index(logits, true_bins)  # [*, N, N]
    mask = pseudo_beta_mask.to(dtype)
    square_mask = mask[..., :, None] * mask[..., None, :]

    # Row sums first, then divide, then sum: the reference's fp16-friendly order.
    denom = eps + torch.sum(square_mask, dim=(-1, -2))
    mean = torch.sum(errors * square_mask, dim=-1) / denom[..., None]
    return torch.sum(mean, dim=-1)
