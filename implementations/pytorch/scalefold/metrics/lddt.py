"""lDDT (local Distance Difference Test) as the MLPerf OpenFold benchmark computes it.

The benchmark's quality metric is lDDT-Cα: for every pair of Cα atoms closer than 15 Å in
the *true* structure (self pairs excluded, both orders counted), the difference between
the true and predicted distance is scored 0.25 per threshold it stays under
(0.5, 1, 2, 4 Å, strict "<"). One chain's score is the mean over all its scored pairs
(not the mean of per-residue scores), and the validation score is the plain arithmetic
mean of the per-chain scores over the validation set.

`eps` enters twice, exactly as in the reference: inside the square root of the distances
and in both the numerator and the denominator of the ratio. The latter makes a chain or
residue without any scored pair score 1.0 instead of 0/0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

# Atom37 slot of Cα. Atom37 puts N, CA, C first in every residue layout (AlphaFold's
# residue_constants.atom_types); kept local so the metric has no import-time dependency
# on the geometry tables.
CA_INDEX = 1

LDDT_THRESHOLDS = (0.5, 1.0, 2.0, 4.0)

# The reference's validation (openfold/validation_metrics.py) passes eps=1e-8 to lddt_ca.
VALIDATION_EPS = 1e-8


def _check_points(pred: torch.Tensor, true: torch.Tensor, mask: torch.Tensor) -> None:
    if pred.shape != true.shape:
        raise ValueError(f"predicted {tuple(pred.shape)} and true {tuple(true.shape)} differ")
    if pred.shape[-1] != 3:
        raise ValueError(f"points must end in 3 coordinates, got {tuple(pred.shape)}")
    if mask.shape != pred.shape[:-1]:
        raise ValueError(f"mask {tuple(mask.shape)} does not match points {tuple(pred.shape)}")
    if pred.shape[-2] == 0:
        raise ValueError("lDDT of a zero-length chain is undefined")


def _pairwise_distances(points: torch.Tensor, eps: float) -> torch.Tensor:
    # [..., P, 3] -> [..., P, P]; explicit differences (not cdist) so that the eps
    # regularisation is exactly the reference's.
    diff = points[..., :, None, :] - points[..., None, :, :]
    return torch.sqrt(eps + torch.sum(diff * diff, dim=-1))


def _threshold_score(dist_l1: torch.Tensor) -> torch.Tensor:
    score = torch.zeros_like(dist_l1)
    for threshold in LDDT_THRESHOLDS:
        score = score + (dist_l1 < threshold).to(dist_l1.dtype)
    return score * (1.0 / len(LDDT_THRESHOLDS))


def lddt(
    pred_points: torch.Tensor,
    true_points: torch.Tensor,
    points_mask: torch.Tensor,
    cutoff: float = 15.0,
    eps: float = 1e-10,
    per_residue: bool = False,
) -> torch.Tensor:
    """lDDT over a set of points (one point per residue, e.g. Cα).

    Args:
        pred_points: [..., P, 3] predicted positions.
        true_points: [..., P, 3] true positions.
        points_mask: [..., P] 1 where the true position is known.
        cutoff: inclusion radius in the true structure (strict "<").
        eps: regulariser, see the module docstring.
        per_residue: return one score per point instead of one per structure.

    Returns:
        [...] or, with per_residue, [..., P]. Differentiable almost everywhere (the
        threshold steps have zero gradient), free of host synchronisation.
    """
    _check_points(pred_points, true_points, points_mask)
    dtype = pred_points.dtype
    mask = points_mask.to(dtype)
    num_points = pred_points.shape[-2]

    dmat_true = _pairwise_distances(true_points, eps)  # [..., P, P]
    dmat_pred = _pairwise_distances(pred_points, eps)  # [..., P, P]

    not_self = 1.0 - torch.eye(num_points, dtype=dtype, device=pred_points.device)
    pair_mask = (dmat_true < cutoff).to(dtype) * mask[..., :, None] * mask[..., None, :] * not_self
    score = _threshold_score(torch.abs(dmat_true - dmat_pred))

    dims = (-1,) if per_residue else (-2, -1)
    norm = 1.0 / (eps + torch.sum(pair_mask, dim=dims))
    return norm * (eps + torch.sum(pair_mask * score, dim=dims))


def lddt_ca(
    pred_atom37_positions: torch.Tensor,
    true_atom37_positions: torch.Tensor,
    atom37_mask: torch.Tensor,
    cutoff: float = 15.0,
    eps: float = VALIDATION_EPS,
    per_residue: bool = False,
) -> torch.Tensor:
    """lDDT-Cα, the MLPerf OpenFold validation metric, for one chain per leading index.

    Args:
        pred_atom37_positions: [..., N, 37, 3].
        true_atom37_positions: [..., N, 37, 3].
        atom37_mask: [..., N, 37]; only the Cα column is used.
        cutoff, eps, per_residue: see `lddt`. The default eps is the validation's 1e-8.

    Returns:
        [...] per-chain scores (or [..., N] per residue). Average chains with
        `mean_over_chains`, as the benchmark does.
    """
    if pred_atom37_positions.shape[-2:] != (37, 3):
        raise ValueError(f"expected [..., N, 37, 3], got {tuple(pred_atom37_positions.shape)}")
    return lddt(
        pred_atom37_positions[..., CA_INDEX, :],
        true_atom37_positions[..., CA_INDEX, :],
        atom37_mask[..., CA_INDEX],
        cutoff=cutoff,
        eps=eps,
        per_residue=per_residue,
    )


def mean_over_chains(per_chain_scores: Iterable[float] | torch.Tensor) -> float:
    """The benchmark's validation score: arithmetic mean of per-chain lDDT-Cα values.

    The reference gathers one float per validation chain and takes their plain mean
    (each chain counts once, whatever its length). Host-side by design: it runs once per
    evaluation over already-gathered scores.
    """
    if isinstance(per_chain_scores, torch.Tensor):
        values = [float(v) for v in per_chain_scores.detach().reshape(-1).cpu().tolist()]
    else:
        values = [float(v) for v in per_chain_scores]
    if not values:
        raise ValueError("no chains to average")
    return math.fsum(values) / len(values)


def lddt_all_atom(
    pred_atom37_positions: torch.Tensor,
    true_atom37_positions: torch.Tensor,
    atom37_mask: torch.Tensor,
    cutoff: float = 15.0,
    exclude_same_residue: bool = True,
    per_residue: bool = False,
    eps: float = 1e-10,
    block_size: int = 32,
) -> torch.Tensor:
    """Full-atom lDDT (a report metric, not used by the benchmark).

    Every pair of resolved atoms closer than `cutoff` in the true structure is scored
    like lDDT-Cα; with `exclude_same_residue` (the usual definition, and biotite's
    default) pairs inside one residue are skipped. The per-residue score averages the
    pairs whose first atom lies in that residue.

    Args:
        pred_atom37_positions, true_atom37_positions: [..., N, 37, 3].
        atom37_mask: [..., N, 37].
        block_size: residues per row block; bounds memory at
            O(block_size * 37 * N * 37) instead of O((37 N)^2).

    Returns:
        [...] or [..., N].
    """
    if pred_atom37_positions.shape[-2:] != (37, 3):
        raise ValueError(f"expected [..., N, 37, 3], got {tuple(pred_atom37_positions.shape)}")
    _check_points(pred_atom37_positions, true_atom37_positions, atom37_mask)
    if pred_atom37_positions.shape[-3] == 0:
        raise ValueError("lDDT of a zero-length chain is undefined")
    dtype = pred_atom37_positions.dtype
    device = pred_atom37_positions.device
    batch_shape = pred_atom37_positions.shape[:-3]
    num_res = pred_atom37_positions.shape[-3]

    pred = pred_atom37_positions.reshape(*batch_shape, num_res * 37, 3)
    true = true_atom37_positions.reshape(*batch_shape, num_res * 37, 3)
    mask = atom37_mask.to(dtype).reshape(*batch_shape, num_res * 37)
    residue_of_atom = torch.arange(num_res, device=device).repeat_interleave(37)

    scored_sum = []  # per row block: [..., b] summed over partner atoms
    pair_count = []
    for start in range(0, num_res, block_size):
        stop = min(start + block_size, num_res)
        rows = slice(start * 37, stop * 37)
        # [..., b*37, N*37]
        d_true = torch.sqrt(
            eps + torch.sum((true[..., rows, None, :] - true[..., None, :, :]) ** 2, dim=-1)
        )
        d_pred = torch.sqrt(
            eps + torch.sum((pred[..., rows, None, :] - pred[..., None, :, :]) ** 2, dim=-1)
        )
        pair_mask = (d_true < cutoff).to(dtype) * mask[..., rows, None] * mask[..., None, :]
        same = residue_of_atom[rows, None] == residue_of_atom[None, :]
        if exclude_same_residue:
            pair_mask = pair_mask * (~same).to(dtype)
        else:
            row_ids = torch.arange(start * 37, stop * 37, device=device)
            not_self = row_ids[:, None] != torch.arange(num_res * 37, device=device)[None, :]
            pair_mask = pair_mask * not_self.to(dtype)
        score = _threshold_score(torch.abs(d_true - d_pred))
        scored_sum.append(torch.sum(pair_mask * score, dim=-1))
        pair_count.append(torch.sum(pair_mask, dim=-1))

    scored = torch.cat(scored_sum, dim=-1)  # [..., N*37]
    counts = torch.cat(pair_count, dim=-1)  # [..., N*37]
    if per_residue:
        scored = scored.reshape(*batch_shape, num_res, 37).sum(dim=-1)
        counts = counts.reshape(*batch_shape, num_res, 37).sum(dim=-1)
    else:
        scored = scored.sum(dim=-1)
        counts = counts.sum(dim=-1)
    return (eps + scored) / (eps + counts)
