"""Evoformer, extra-MSA and their shared pair core (AlphaFold2 supplement, 1.6 and 1.7.2)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from scalefold.model.config import EvoformerConfig, ExtraMSAConfig
from scalefold.model.dropout import dropout_columnwise, dropout_rowwise
from scalefold.model.msa import (
    MSAColumnAttention,
    MSAColumnGlobalAttention,
    MSARowAttentionWithPairBias,
    Transition,
)
from scalefold.model.pair import OuterProductMean, TriangleAttention, TriangleMultiplication
from scalefold.model.primitives import Linear


class EvoformerBlockCore(nn.Module):
    """MSA transition, outer product mean and the pair stack, shared by both MSA stacks."""

    def __init__(
        self,
        c_m: int,
        c_z: int,
        c_hidden_opm: int,
        c_hidden_tri_mul: int,
        c_hidden_tri_att: int,
        num_heads_tri: int,
        transition_n: int,
        pair_dropout: float,
        inf: float,
        eps_opm: float,
    ) -> None:
        super().__init__()
        self.msa_transition = Transition(c_m, transition_n)
        self.outer_product_mean = OuterProductMean(c_m, c_z, c_hidden_opm, eps_opm)
        self.tri_mul_out = TriangleMultiplication(c_z, c_hidden_tri_mul, outgoing=True)
        self.tri_mul_in = TriangleMultiplication(c_z, c_hidden_tri_mul, outgoing=False)
        self.tri_att_start = TriangleAttention(
            c_z, c_hidden_tri_att, num_heads_tri, inf, starting=True
        )
        self.tri_att_end = TriangleAttention(
            c_z, c_hidden_tri_att, num_heads_tri, inf, starting=False
        )
        self.pair_transition = Transition(c_z, transition_n)
        self.pair_dropout_row = dropout_rowwise(pair_dropout)
        self.pair_dropout_col = dropout_columnwise(pair_dropout)

    def forward(
        self, m: torch.Tensor, z: torch.Tensor, msa_mask: torch.Tensor, pair_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # m: [*, S, N, c_m]  z: [*, N, N, c_z]  msa_mask: [*, S, N]  pair_mask: [*, N, N]
        m = self.msa_transition.added_to(m, m)
        z = self.outer_product_mean.added_to(z, m, msa_mask)
        z = self.pair_dropout_row.update(z, self.tri_mul_out, z, pair_mask)
        z = self.pair_dropout_row.update(z, self.tri_mul_in, z, pair_mask)
        z = self.pair_dropout_row.update(z, self.tri_att_start, z, pair_mask)
        z = self.pair_dropout_col.update(z, self.tri_att_end, z, pair_mask)
        z = self.pair_transition.added_to(z, z)
        return m, z


def _core(cfg: EvoformerConfig | ExtraMSAConfig, c_m: int) -> EvoformerBlockCore:
    return EvoformerBlockCore(
        c_m=c_m,
        c_z=cfg.c_z,
        c_hidden_opm=cfg.c_hidden_opm,
        c_hidden_tri_mul=cfg.c_hidden_tri_mul,
        c_hidden_tri_att=cfg.c_hidden_tri_att,
        num_heads_tri=cfg.num_heads_tri,
        transition_n=cfg.transition_n,
        pair_dropout=cfg.pair_dropout,
        inf=cfg.inf,
        eps_opm=cfg.eps_opm,
    )


class EvoformerBlock(nn.Module):
    def __init__(self, cfg: EvoformerConfig) -> None:
        super().__init__()
        self.msa_att_row = MSARowAttentionWithPairBias(
            cfg.c_m, cfg.c_z, cfg.c_hidden_msa_att, cfg.num_heads_msa, cfg.inf
        )
        self.msa_att_col = MSAColumnAttention(
            cfg.c_m, cfg.c_hidden_msa_att, cfg.num_heads_msa, cfg.inf
        )
        self.msa_dropout_row = dropout_rowwise(cfg.msa_dropout)
        self.core = _core(cfg, cfg.c_m)

    def forward(self, m, z, msa_mask, pair_mask):
        m = self.msa_dropout_row.update(m, self.msa_att_row, m, z, msa_mask)
        m = self.msa_att_col.added_to(m, m, msa_mask)
        return self.core(m, z, msa_mask, pair_mask)


class ExtraMSABlock(nn.Module):
    def __init__(self, cfg: ExtraMSAConfig) -> None:
        super().__init__()
        self.msa_att_row = MSARowAttentionWithPairBias(
            cfg.c_e, cfg.c_z, cfg.c_hidden_msa_att, cfg.num_heads_msa, cfg.inf
        )
        self.msa_att_col = MSAColumnGlobalAttention(
            cfg.c_e, cfg.c_hidden_msa_att, cfg.num_heads_msa, cfg.inf, cfg.eps
        )
        self.msa_dropout_row = dropout_rowwise(cfg.msa_dropout)
        self.core = _core(cfg, cfg.c_e)

    def forward(self, m, z, msa_mask, pair_mask):
        m = self.msa_dropout_row.update(m, self.msa_att_row, m, z, msa_mask)
        m = m + self.msa_att_col(m, msa_mask)  # global attention: its own output layout
        return self.core(m, z, msa_mask, pair_mask)


def run_blocks(
    blocks: nn.ModuleList,
    m: torch.Tensor,
    z: torch.Tensor,
    msa_mask: torch.Tensor,
    pair_mask: torch.Tensor,
    activation_checkpointing: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply blocks in order; recompute each block's activations in backward if asked."""
    recompute = activation_checkpointing and torch.is_grad_enabled()
    for block in blocks:
        if recompute:
            m, z = checkpoint(block, m, z, msa_mask, pair_mask, use_reentrant=False)
        else:
            m, z = block(m, z, msa_mask, pair_mask)
    return m, z


class EvoformerStack(nn.Module):
    def __init__(self, cfg: EvoformerConfig) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([EvoformerBlock(cfg) for _ in range(cfg.num_blocks)])
        self.linear = Linear(cfg.c_m, cfg.c_s)
        self.activation_checkpointing = False

    def forward(self, m, z, msa_mask, pair_mask):
        # returns m: [*, S, N, c_m], z: [*, N, N, c_z], s: [*, N, c_s]
        m, z = run_blocks(self.blocks, m, z, msa_mask, pair_mask, self.activation_checkpointing)
        s = self.linear(m[..., 0, :, :])
        return m, z, s


class ExtraMSAStack(nn.Module):
    def __init__(self, cfg: ExtraMSAConfig) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([ExtraMSABlock(cfg) for _ in range(cfg.num_blocks)])
        self.activation_checkpointing = False

    def forward(self, a, z, msa_mask, pair_mask) -> torch.Tensor:
        _, z = run_blocks(self.blocks, a, z, msa_mask, pair_mask, self.activation_checkpointing)
        return z
