"""Supervised side-chain torsion loss (AF2 suppl. 1.9.1, Alg. 27).

chi_weight * (squared sin/cos error of chi1..chi4, with pi-periodic chis compared to the
better of the true angle and the true angle + pi, averaged over layers, residues and
existing chis) + angle_norm_weight * (mean |norm - 1| of the unnormalised 7 torsion
predictions over layers and residues). The backbone torsions (omega, phi, psi) are not
supervised, only normalised.
"""

from __future__ import annotations

import numpy as np
import torch

from scalefold.geometry import residue_constants as rc
from scalefold.losses._common import MASKED_MEAN_EPS, masked_mean


def chi_pi_periodic_table(
    device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """[21, 4] 1.0 where chi k of restype r is pi-periodic (UNK row all zero)."""
    # np.array copies: the residue-constant arrays are read-only.
    return torch.from_numpy(np.array(rc.restype_chi_pi_periodic)).to(device, dtype)


def supervised_chi_loss(
    angles_sin_cos: torch.Tensor,
    unnormalized_angles_sin_cos: torch.Tensor,
    aatype: torch.Tensor,
    seq_mask: torch.Tensor,
    chi_mask: torch.Tensor,
    chi_angles_sin_cos: torch.Tensor,
    chi_weight: float = 0.5,
    angle_norm_weight: float = 0.01,
    eps: float = 1e-8,
    chi_pi_periodic: torch.Tensor | None = None,
) -> torch.Tensor:
    """Torsion-angle loss.

    Args:
        angles_sin_cos: [B, S, N, 7, 2] normalised predictions of every layer.
        unnormalized_angles_sin_cos: [B, S, N, 7, 2].
        aatype: [B, N] in 0..20.
        seq_mask: [B, N].
        chi_mask: [B, N, 4].
        chi_angles_sin_cos: [B, N, 4, 2] true chi angles as (sin, cos).
        eps: inside the sqrt of the angle norm (the reference configures 1e-8;
            AlphaFold hard-codes 1e-6).
        chi_pi_periodic: [21, 4] table (`chi_pi_periodic_table`), passed in by
            `AlphaFoldLoss` as a buffer so no host-to-device copy happens per call.

    Returns:
        [B].
    """
    dtype = angles_sin_cos.dtype
    if chi_pi_periodic is None:
        chi_pi_periodic = chi_pi_periodic_table(angles_sin_cos.device, dtype)
    pred_chi = angles_sin_cos[..., 3:, :]  # [B, S, N, 4, 2]
    true_chi = chi_angles_sin_cos.to(dtype)[:, None]  # [B, 1, N, 4, 2]

    # -1 for pi-periodic chis (sin and cos both flip under +pi), +1 otherwise.
    pi_periodic = chi_pi_periodic.to(dtype)[aatype.long()]  # [B, N, 4]
    shift = (1.0 - 2.0 * pi_periodic)[:, None, :, :, None]  # [B, 1, N, 4, 1]
    sq_error = torch.sum((true_chi - pred_chi) ** 2, dim=-1)  # [B, S, N, 4]
    sq_error_shifted = torch.sum((shift * true_chi - pred_chi) ** 2, dim=-1)
    sq_error = torch.minimum(sq_error, sq_error_shifted)

    mask = chi_mask.to(dtype)[:, None]  # [B, 1, N, 4]
    sq_chi_loss = masked_mean(mask, sq_error, dim=(-1, -2, -3), eps=MASKED_MEAN_EPS)

    angle_norm = torch.sqrt(torch.sum(unnormalized_angles_sin_cos**2, dim=-1) + eps)
    norm_error = torch.abs(angle_norm - 1.0)  # [B, S, N, 7]
    norm_mask = seq_mask.to(dtype)[:, None, :, None]  # [B, 1, N, 1]
    angle_norm_loss = masked_mean(norm_mask, norm_error, dim=(-1, -2, -3), eps=MASKED_MEAN_EPS)

    return chi_weight * sq_chi_loss + angle_norm_weight * angle_norm_loss
