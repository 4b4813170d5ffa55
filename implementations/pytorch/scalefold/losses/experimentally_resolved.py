"""Experimentally-resolved loss (AF2 suppl. 1.9.10); weight 0 in the MLPerf benchmark."""

from __future__ import annotations

import torch

from scalefold.losses._common import resolution_filter, sigmoid_cross_entropy


def experimentally_resolved_loss(
    logits: torch.Tensor,
    atom37_atom_exists: torch.Tensor,
    all_atom_mask: torch.Tensor,
    resolution: torch.Tensor,
    min_resolution: float = 0.1,
    max_resolution: float = 3.0,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Per-atom sigmoid cross entropy of "resolved", over the atoms the residue type has.

    Args:
        logits: [*, N, 37].
        atom37_atom_exists: [*, N, 37].
        all_atom_mask: [*, N, 37] 1 where the atom is resolved in the true structure.
        resolution: [*]; samples outside [min, max] (NMR, distillation: 0) get 0.

    Returns:
        [*].
    """
    dtype = logits.dtype
    exists = atom37_atom_exists.to(dtype)
    errors = sigmoid_cross_entropy(logits, all_atom_mask.to(dtype))  # [*, N, 37]
    loss = torch.sum(errors * exists, dim=-1)  # [*, N]
    loss = loss / (eps + torch.sum(exists, dim=(-1, -2)))[..., None]
    loss = torch.sum(loss, dim=-1)
    return loss * resolution_filter(resolution, min_resolution, max_resolution, dtype)
