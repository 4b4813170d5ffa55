"""Input, recycling and extra-MSA embedders (AlphaFold2 supplement, 1.5 and 1.10)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from scalefold.model.config import InputEmbedderConfig, RecyclingEmbedderConfig
from scalefold.model.primitives import LayerNorm, Linear


class InputEmbedder(nn.Module):
    """Target/MSA features → initial MSA and pair representations (Algorithms 3, 4)."""

    def __init__(self, cfg: InputEmbedderConfig) -> None:
        super().__init__()
        self.relpos_k = cfg.relpos_k
        self.linear_tf_z_i = Linear(cfg.tf_dim, cfg.c_z)
        self.linear_tf_z_j = Linear(cfg.tf_dim, cfg.c_z)
        self.linear_tf_m = Linear(cfg.tf_dim, cfg.c_m)
        self.linear_msa_m = Linear(cfg.msa_dim, cfg.c_m)
        self.linear_relpos = Linear(2 * cfg.relpos_k + 1, cfg.c_z)

    def forward(
        self, target_feat: torch.Tensor, residue_index: torch.Tensor, msa_feat: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # target_feat: [*, N, 22]  residue_index: [*, N]  msa_feat: [*, S, N, 49]
        ri = residue_index.long()
        offset = ri[..., :, None] - ri[..., None, :]  # [*, N, N]
        bins = torch.clamp(offset + self.relpos_k, 0, 2 * self.relpos_k)
        relpos = F.one_hot(bins, 2 * self.relpos_k + 1).to(target_feat.dtype)
        z = (
            self.linear_tf_z_i(target_feat)[..., :, None, :]
            + self.linear_tf_z_j(target_feat)[..., None, :, :]
            + self.linear_relpos(relpos)
        )  # [*, N, N, c_z]
        m = self.linear_msa_m(msa_feat) + self.linear_tf_m(target_feat).unsqueeze(-3)
        return m, z  # m: [*, S, N, c_m]


def distogram_one_hot(
    x: torch.Tensor, min_bin: float, max_bin: float, num_bins: int, inf: float
) -> torch.Tensor:
    """One-hot of pairwise distances in `num_bins` bins starting at `min_bin` (Algorithm 32).

    Squared distances are compared with squared bin edges, as AlphaFold does; the last bin
    is open-ended.
    """
    # x: [*, N, 3] -> [*, N, N, num_bins]
    # In float32 whatever x is: bf16 coordinates of ~50 Å are 0.25 Å apart, a fifth of a
    # bin. Every constant is made on the device (no host copy: CUDA-graph capturable).
    xf = x.float()
    lower = torch.linspace(min_bin, max_bin, num_bins, dtype=xf.dtype, device=x.device) ** 2
    upper = torch.cat([lower[1:], torch.full((1,), inf, dtype=xf.dtype, device=x.device)])
    d2 = torch.sum((xf[..., :, None, :] - xf[..., None, :, :]) ** 2, dim=-1, keepdim=True)
    return ((d2 > lower) & (d2 < upper)).to(x.dtype)


class RecyclingEmbedder(nn.Module):
    """Embeds the previous iteration's outputs (Algorithm 32)."""

    def __init__(self, cfg: RecyclingEmbedderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.linear = Linear(cfg.num_bins, cfg.c_z)
        self.layer_norm_m = LayerNorm(cfg.c_m)
        self.layer_norm_z = LayerNorm(cfg.c_z)

    def forward(
        self, m0_prev: torch.Tensor, z_prev: torch.Tensor, x_prev: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # m0_prev: [*, N, c_m]  z_prev: [*, N, N, c_z]  x_prev: [*, N, 3] pseudo-beta
        c = self.cfg
        dgram = distogram_one_hot(x_prev, c.min_bin, c.max_bin, c.num_bins, c.inf)
        return self.layer_norm_m(m0_prev), self.layer_norm_z(z_prev) + self.linear(
            dgram.to(z_prev.dtype))  # one-hot: exact in any dtype


class ExtraMSAEmbedder(nn.Module):
    def __init__(self, feat_dim: int, c_e: int) -> None:
        super().__init__()
        self.linear = Linear(feat_dim, c_e)

    def forward(self, extra_msa_feat: torch.Tensor) -> torch.Tensor:
        return self.linear(extra_msa_feat)


def build_extra_msa_feat(feats: dict[str, torch.Tensor]) -> torch.Tensor:
    """[*, S_e, N, 25]: one-hot residue (23), has-deletion, deletion value."""
    return torch.cat(
        [
            F.one_hot(feats["extra_msa"].long(), 23).to(feats["extra_deletion_value"].dtype),
            feats["extra_has_deletion"].unsqueeze(-1),
            feats["extra_deletion_value"].unsqueeze(-1),
        ],
        dim=-1,
    )
