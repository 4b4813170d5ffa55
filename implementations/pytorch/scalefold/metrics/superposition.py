"""Optimal rigid superposition (Kabsch) and the report metrics built on it.

The reference reports Cα-RMSD after superposition ("alignment_rmsd"), GDT-TS and GDT-HA
(openfold/validation_metrics.py). It superimposes with Biopython's SVDSuperimposer on the
resolved Cα atoms, one chain at a time on the host; here the same least-squares fit is
done batched in torch (proper rotations only, reflections excluded). GDT is computed, as
in the reference, on that single RMSD-optimal superposition, not by LGA's search over
superpositions, so it is a lower bound of the official GDT-TS.
"""

from __future__ import annotations

import torch

from scalefold.metrics.lddt import CA_INDEX

GDT_TS_CUTOFFS = (1.0, 2.0, 4.0, 8.0)
GDT_HA_CUTOFFS = (0.5, 1.0, 2.0, 4.0)


def _check(coords: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor) -> None:
    if coords.shape != reference.shape or coords.shape[-1] != 3:
        raise ValueError(
            f"coordinates {tuple(coords.shape)} and reference {tuple(reference.shape)} "
            "must match and end in 3"
        )
    if mask.shape != coords.shape[:-1]:
        raise ValueError(f"mask {tuple(mask.shape)} does not match {tuple(coords.shape)}")
    if coords.shape[-2] == 0:
        raise ValueError("cannot superimpose zero-length chains")


def superimpose(
    reference: torch.Tensor, coords: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares fit of `coords` onto `reference` over the masked points.

    Args:
        reference: [..., N, 3] fixed structure.
        coords: [..., N, 3] structure to move.
        mask: [..., N] points used for the fit and the RMSD.

    Returns:
        ([..., N, 3] moved coords (every point is moved, masked or not),
         [...] RMSD over the masked points). Computed in float64 because the SVD of a
        near-degenerate covariance is precision-sensitive; returned in the input dtype.
        A structure with no masked point gets RMSD 0.
    """
    _check(coords, reference, mask)
    out_dtype = coords.dtype
    x = coords.to(torch.float64)
    y = reference.to(torch.float64)
    w = mask.to(torch.float64)[..., None]  # [..., N, 1]
    count = torch.clamp(w.sum(dim=-2), min=1.0)  # [..., 1]

    x_mean = (w * x).sum(dim=-2, keepdim=True) / count[..., None]
    y_mean = (w * y).sum(dim=-2, keepdim=True) / count[..., None]
    xc = x - x_mean
    yc = y - y_mean

    # [..., 3, 3] covariance; rotation R maps centred coords onto centred reference.
    cov = torch.einsum("...ni,...nj->...ij", w * xc, yc)
    u, _, vh = torch.linalg.svd(cov)
    # A reflection would fit better for mirror images; flip the weakest axis instead.
    det = torch.det(vh.transpose(-1, -2) @ u.transpose(-1, -2))
    flip = torch.ones(*det.shape, 3, dtype=torch.float64, device=det.device)
    flip[..., 2] = torch.sign(det) + (det == 0).to(torch.float64)
    rot = vh.transpose(-1, -2) @ (flip[..., :, None] * u.transpose(-1, -2))  # [..., 3, 3]

    moved = torch.einsum("...ij,...nj->...ni", rot, xc) + y_mean
    sq = torch.sum((moved - y) ** 2, dim=-1) * w[..., 0]
    rmsd = torch.sqrt(sq.sum(dim=-1) / count[..., 0])
    return moved.to(out_dtype), rmsd.to(out_dtype)


def ca_rmsd(
    pred_atom37_positions: torch.Tensor,
    true_atom37_positions: torch.Tensor,
    atom37_mask: torch.Tensor,
) -> torch.Tensor:
    """Cα-RMSD after optimal superposition of the prediction onto the truth.

    Shapes: [..., N, 37, 3], [..., N, 37, 3], [..., N, 37] -> [...].
    """
    _, rmsd = superimpose(
        true_atom37_positions[..., CA_INDEX, :],
        pred_atom37_positions[..., CA_INDEX, :],
        atom37_mask[..., CA_INDEX],
    )
    return rmsd


def _gdt(
    pred_atom37_positions: torch.Tensor,
    true_atom37_positions: torch.Tensor,
    atom37_mask: torch.Tensor,
    cutoffs: tuple[float, ...],
) -> torch.Tensor:
    true_ca = true_atom37_positions[..., CA_INDEX, :]
    mask = atom37_mask[..., CA_INDEX]
    moved, _ = superimpose(true_ca, pred_atom37_positions[..., CA_INDEX, :], mask)
    dist = torch.sqrt(torch.sum((moved.to(torch.float64) - true_ca.to(torch.float64)) ** 2, -1))
    m = mask.to(torch.float64)
    count = torch.clamp(m.sum(dim=-1), min=1.0)
    # Inclusive "<=" as in the reference's gdt().
    fractions = [((dist <= c).to(torch.float64) * m).sum(dim=-1) / count for c in cutoffs]
    return (sum(fractions) / len(cutoffs)).to(pred_atom37_positions.dtype)


def gdt_ts(
    pred_atom37_positions: torch.Tensor,
    true_atom37_positions: torch.Tensor,
    atom37_mask: torch.Tensor,
) -> torch.Tensor:
    """GDT-TS in [0, 1] on Cα (cutoffs 1, 2, 4, 8 Å), per chain: [...]."""
    return _gdt(pred_atom37_positions, true_atom37_positions, atom37_mask, GDT_TS_CUTOFFS)


def gdt_ha(
    pred_atom37_positions: torch.Tensor,
    true_atom37_positions: torch.Tensor,
    atom37_mask: torch.Tensor,
) -> torch.Tensor:
    """GDT-HA in [0, 1] on Cα (cutoffs 0.5, 1, 2, 4 Å), per chain: [...]."""
    return _gdt(pred_atom37_positions, true_atom37_positions, atom37_mask, GDT_HA_CUTOFFS)
