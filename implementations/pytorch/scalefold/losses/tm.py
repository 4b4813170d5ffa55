"""Predicted-aligned-error / TM-score head loss (AF2 suppl. 1.9.7); off in the MLPerf run."""

from __future__ import annotations

import torch

from scalefold.geometry.rigid import Rigid
from scalefold.losses._common import resolution_filter, softmax_cross_entropy_with_index
from scalefold.losses.fape import _to_frame_local


def tm_loss(
    logits: torch.Tensor,
    final_affine_tensor: torch.Tensor,
    backbone_rigid_tensor: torch.Tensor,
    backbone_rigid_mask: torch.Tensor,
    resolution: torch.Tensor,
    max_bin: int = 31,
    num_bins: int = 64,
    min_resolution: float = 0.1,
    max_resolution: float = 3.0,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Cross entropy of the binned aligned error of every residue in every backbone frame.

    Args:
        logits: [*, N, N, num_bins] (rows: aligning frame, columns: residue).
        final_affine_tensor: [*, N, 4, 4] predicted backbone frames.
        backbone_rigid_tensor: [*, N, 4, 4]; backbone_rigid_mask: [*, N].
        resolution: [*].

    Returns:
        [*].
    """
    dtype = logits.dtype
    with torch.no_grad():
        pred = Rigid.from_tensor_4x4(final_affine_tensor.to(dtype))
        true = Rigid.from_tensor_4x4(backbone_rigid_tensor.to(dtype))
        diff = _to_frame_local(pred, pred.trans) - _to_frame_local(true, true.trans)
        sq_error = torch.sum(diff * diff, dim=-1)  # [*, N, N]
        sq_breaks = (
            torch.linspace(0.0, max_bin, num_bins - 1, device=logits.device, dtype=dtype) ** 2
        )
        true_bins = torch.sum(sq_error[..., None] > sq_breaks, dim=-1)
    errors = softmax_cross_entropy_with_index(logits, true_bins)
    mask = backbone_rigid_mask.to(dtype)
    square_mask = mask[..., :, None] * mask[..., None, :]
    # sum / (eps + 0.5 * count) * 0.5, the reference's fp16-friendly form.
    loss = torch.sum(errors * square_mask, dim=-1)
    denom = 2.0 * eps + torch.sum(square_mask, dim=(-1, -2))
    loss = torch.sum(loss / denom[..., None], dim=-1)
    return loss * resolution_filter(resolution, min_resolution, max_resolution, dtype)
