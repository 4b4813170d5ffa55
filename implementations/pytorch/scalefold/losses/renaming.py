"""Renaming of symmetric side-chain atoms in the ground truth (AF2 suppl. 1.8.5, Alg. 26).

ASP, GLU, PHE and TYR have atom pairs whose names swap under a 180° side-chain flip. For
each residue the ground truth is taken either as named or with those pairs swapped,
whichever gives the smaller summed distance-matrix error between its ambiguous atoms and
all unambiguous atoms of the chain, measured against the prediction.
"""

from __future__ import annotations

import torch


def _atom_pair_distances(positions: torch.Tensor, eps: float) -> torch.Tensor:
    # [*, N, 14, 3] -> [*, N, N, 14, 14]
    diff = positions[..., :, None, :, None, :] - positions[..., None, :, None, :, :]
    return torch.sqrt(eps + torch.sum(diff * diff, dim=-1))


@torch.no_grad()
def compute_renamed_ground_truth(
    atom14_gt_positions: torch.Tensor,
    atom14_alt_gt_positions: torch.Tensor,
    atom14_atom_is_ambiguous: torch.Tensor,
    atom14_gt_exists: torch.Tensor,
    atom14_alt_gt_exists: torch.Tensor,
    atom14_pred_positions: torch.Tensor,
    eps: float = 1e-10,
) -> dict[str, torch.Tensor]:
    """Pick, per residue, the naming of the ground truth closest to the prediction.

    No gradient flows through the choice (it is a comparison), so the whole computation
    runs without autograd bookkeeping.

    Args:
        atom14_gt_positions, atom14_alt_gt_positions: [*, N, 14, 3].
        atom14_atom_is_ambiguous, atom14_gt_exists, atom14_alt_gt_exists: [*, N, 14].
        atom14_pred_positions: [*, N, 14, 3] (final structure-module layer).

    Returns:
        alt_naming_is_better [*, N] (1.0 where the swapped naming wins),
        renamed_atom14_gt_positions [*, N, 14, 3], renamed_atom14_gt_exists [*, N, 14].
    """
    dtype = atom14_pred_positions.dtype
    gt_positions = atom14_gt_positions.to(dtype)
    alt_gt_positions = atom14_alt_gt_positions.to(dtype)
    gt_exists = atom14_gt_exists.to(dtype)
    ambiguous = atom14_atom_is_ambiguous.to(dtype)

    pred_dists = _atom_pair_distances(atom14_pred_positions, eps)
    gt_dists = _atom_pair_distances(gt_positions, eps)
    alt_gt_dists = _atom_pair_distances(alt_gt_positions, eps)

    error = torch.sqrt(eps + (pred_dists - gt_dists) ** 2)  # [*, N, N, 14, 14]
    alt_error = torch.sqrt(eps + (pred_dists - alt_gt_dists) ** 2)

    # Rows: existing ambiguous atoms of residue i; columns: existing unambiguous atoms of
    # any residue j.
    mask = (
        gt_exists[..., :, None, :, None]
        * ambiguous[..., :, None, :, None]
        * gt_exists[..., None, :, None, :]
        * (1.0 - ambiguous[..., None, :, None, :])
    )
    per_res_error = torch.sum(mask * error, dim=(-1, -2, -3))  # [*, N]
    alt_per_res_error = torch.sum(mask * alt_error, dim=(-1, -2, -3))
    alt_naming_is_better = (alt_per_res_error < per_res_error).to(dtype)

    alt = alt_naming_is_better[..., None]
    renamed_positions = (1.0 - alt[..., None]) * gt_positions + alt[..., None] * alt_gt_positions
    renamed_exists = (1.0 - alt) * gt_exists + alt * atom14_alt_gt_exists.to(dtype)
    return {
        "alt_naming_is_better": alt_naming_is_better,
        "renamed_atom14_gt_positions": renamed_positions,
        "renamed_atom14_gt_exists": renamed_exists,
    }
