"""pLDDT loss (AF2 suppl. 1.9.6): classify each residue's true lDDT-Cα into 50 bins."""

from __future__ import annotations

import torch

from scalefold.losses._common import resolution_filter, softmax_cross_entropy_with_index
from scalefold.metrics.lddt import CA_INDEX, lddt


def plddt_targets(
    all_atom_pred_pos: torch.Tensor,
    all_atom_positions: torch.Tensor,
    all_atom_mask: torch.Tensor,
    cutoff: float = 15.0,
    num_bins: int = 50,
    eps: float = 1e-8,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-residue lDDT-Cα of the prediction and its bin index.

    Args:
        all_atom_pred_pos, all_atom_positions: [*, N, 37, 3].
        all_atom_mask: [*, N, 37].

    Returns:
        (score [*, N] detached, bin index [*, N] long). lDDT == 1 goes to the last bin.
    """
    score = lddt(
        all_atom_pred_pos[..., CA_INDEX, :],
        all_atom_positions[..., CA_INDEX, :].to(all_atom_pred_pos.dtype),
        all_atom_mask[..., CA_INDEX],
        cutoff=cutoff,
        eps=eps,
        per_residue=True,
    ).detach()
    bin_index = torch.clamp(torch.floor(score * num_bins).long(), max=num_bins - 1)
    return score, bin_index


def plddt_loss(
    logits: torch.Tensor,
    all_atom_pred_pos: torch.Tensor,
    all_atom_positions: torch.Tensor,
    all_atom_mask: torch.Tensor,
    resolution: torch.Tensor,
    cutoff: float = 15.0,
    num_bins: int = 50,
    min_resolution: float = 0.1,
    max_resolution: float = 3.0,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Cross entropy of the binned true per-residue lDDT-Cα, over resolved Cα atoms.

    The target is computed from the final predicted structure with the gradient stopped,
    so only the logits are trained. The reference uses its configured eps (1e-8) both in
    the lDDT and in the final mean; AlphaFold uses 1e-10 in the lDDT.

    Args:
        logits: [*, N, num_bins].
        all_atom_pred_pos: [*, N, 37, 3] final predicted atom37 positions.
        all_atom_positions: [*, N, 37, 3]; all_atom_mask: [*, N, 37].
        resolution: [*]; samples outside [min, max] get 0.

    Returns:
        [*].
    """
    dtype = logits.dtype
    _, bin_index = plddt_targets(
        all_atom_pred_pos.to(dtype), all_atom_positions, all_atom_mask, cutoff, num_bins, eps
    )
    errors = softmax_cross_entropy_with_index(logits, bin_index)  # [*, N]
    mask_ca = all_atom_mask[..., CA_INDEX].to(dtype)
    loss = torch.sum(errors * mask_ca, dim=-1) / (eps + torch.sum(mask_ca, dim=-1))
    return loss * resolution_filter(resolution, min_resolution, max_resolution, dtype)


def compute_plddt(logits: torch.Tensor) -> torch.Tensor:
    """Expected lDDT-Cα in [0, 100] from pLDDT logits [*, N, num_bins] (bin centres)."""
    num_bins = logits.shape[-1]
    centres = (torch.arange(num_bins, device=logits.device, dtype=logits.dtype) + 0.5) / num_bins
    return torch.sum(torch.softmax(logits, dim=-1) * centres, dim=-1) * 100.0
