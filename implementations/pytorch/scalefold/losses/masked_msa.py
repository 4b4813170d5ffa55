"""Masked-MSA (BERT) loss (AF2 suppl. 1.9.9)."""

from __future__ import annotations

import torch

from scalefold.losses._common import softmax_cross_entropy_with_index


def masked_msa_loss(
    logits: torch.Tensor,
    true_msa: torch.Tensor,
    bert_mask: torch.Tensor,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Cross entropy of the original residue at the masked MSA positions.

    Args:
        logits: [*, N_clust, N, 23].
        true_msa: [*, N_clust, N] in 0..22.
        bert_mask: [*, N_clust, N] 1 where the position was corrupted.
        eps: denominator regulariser. The reference computes
            (sum / (eps + 0.5 * count)) * 0.5 for fp16 headroom, which is
            sum / (2 eps + count); that is what is computed here (AlphaFold: eps + count).

    Returns:
        [*].
    """
    dtype = logits.dtype
    errors = softmax_cross_entropy_with_index(logits, true_msa)  # [*, N_clust, N]
    mask = bert_mask.to(dtype)
    loss = torch.sum(errors * mask, dim=-1)  # [*, N_clust]
    denom = 2.0 * eps + torch.sum(mask, dim=(-1, -2))
    return torch.sum(loss / denom[..., None], dim=-1)
