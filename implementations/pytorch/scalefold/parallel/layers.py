"""Sharded versions of the Evoformer's operations, on the parameters of the plain modules.

Each function takes a plain model module (`MSARowAttentionWithPairBias`, `OuterProductMean`,
`TriangleMultiplication`, `TriangleAttention`, `SharedDropout`) and runs its math on this
rank's block of the representation, calling the module's own submodules (`layer_norm`,
`linear_*`, `mha`), so the parameters, the state dict and any kernel swapped into those
submodules stay what they are. Only operations whose math crosses the sharded axis are
here; column attention, global column attention and transitions work on local blocks
unchanged and are called as modules.

Layouts (P = DAP size, `*` = batch dims, for templates also T):
  rows:    MSA [*, S/P, N, c]   pair [*, N/P, N, c]
  columns: MSA [*, S, N/P, c]   pair [*, N, N/P, c]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from scalefold.model.dropout import SharedDropout
from scalefold.model.msa import MSARowAttentionWithPairBias
from scalefold.model.pair import OuterProductMean, TriangleAttention, TriangleMultiplication
from scalefold.parallel.comm import all_gather


@dataclass(eq=False)
class DAPContext:
    """The DAP group of one sample, held by every parallelized module."""

    group: dist.ProcessGroup | None
    # The MSA's column->row all-to-all of a block started after the outer product mean
    # and completed at the block's end, behind the pair updates (`parallelize_dap`).
    overlap: bool = False

    def __post_init__(self) -> None:
        self.size = dist.get_world_size(self.group)
        self.rank = dist.get_rank(self.group)

    def __deepcopy__(self, memo: dict) -> DAPContext:
        # A process group is a handle on process-wide state: a copy of the model (the
        # evaluation/SWA model) must use the same one, and groups cannot be copied anyway.
        return self

    def shard(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        """This rank's block of a replicated tensor that needs no gradient (masks)."""
        n = x.shape[dim] // self.size
        return x.narrow(dim, self.rank * n, n)


def _heads_first(bias: torch.Tensor) -> torch.Tensor:
    # [*, Q, K, H] -> [*, 1, H, Q, K], broadcast over the attention's batch rows
    return bias.permute(*range(bias.dim() - 3), -1, -3, -2).unsqueeze(-4)


def row_attention_with_pair_bias(
    mod: MSARowAttentionWithPairBias,
    m: torch.Tensor,
    z: torch.Tensor,
    mask: torch.Tensor,
    ctx: DAPContext,
) -> torch.Tensor:
    # m: [*, S/P, N, c_m] rows  z: [*, N/P, N, c_z] rows  mask: [*, S/P, N]
    m = mod.layer_norm_m(m)
    mask_bias = mod.mask_bias(mask)[..., :, None, None, :]  # [*, S/P, 1, 1, N]
    # Every sequence row needs the bias of the whole pair; gathering the H-channel bias
    # instead of the c_z-channel pair moves c_z/H times fewer bytes.
    pair_bias = all_gather(mod.linear_z(mod.layer_norm_z(z)), -3, ctx.group)  # [*, N, N, H]
    return mod.mha(m, m, [mask_bias, _heads_first(pair_bias)])


def outer_product_mean(
    mod: OuterProductMean,
    m: torch.Tensor,
    mask: torch.Tensor,
    full_mask: torch.Tensor,
    ctx: DAPContext,
) -> torch.Tensor:
    """Column-sharded MSA -> the row-sharded pair update."""
    # m: [*, S, N/P, c_m] columns  mask: [*, S, N/P]  full_mask: [*, S, N]
    m = mod.layer_norm(m)
    a, b = mod.project(m, mask)  # each [*, S, N/P, c]
    # The sum over sequences is local in this layout; only the right operand (c = 32
    # channels, not c_m) must be whole, and the output lands row-sharded with no reduction.
    b = all_gather(b, -2, ctx.group)  # [*, S, N, c]
    outer = mod.outer_projection(a, b)  # [*, N/P, N, c_z] (a swapped kernel runs too)
    norm = torch.einsum("...sik,...sjk->...ijk", mask.unsqueeze(-1), full_mask.unsqueeze(-1))
    return outer / (mod.eps + norm)  # norm: [*, N/P, N, 1]


def triangle_multiplication(
    mod: TriangleMultiplication, z: torch.Tensor, mask: torch.Tensor, ctx: DAPContext
) -> torch.Tensor:
    """Outgoing on the row-sharded pair, incoming on the column-sharded pair.

    The module's own two halves (`project`, `combine`) run on the local block, so a
    swapped implementation (channels-first projections, the fused gate, the output
    LayerNorm kernel) runs under DAP too; only one operand is gathered between them.
    """
    # outgoing: z [*, N/P, N, c_z], mask [*, N/P, N]; incoming: z [*, N, N/P, c_z], mask [*, N, N/P]
    z, a, b = mod.project(z, mask)  # a, b: [*, c, N/P, N] (outgoing) or [*, c, N, N/P]
    if mod.outgoing:
        # x_ij = Σ_k a_ik b_jk: rows i are local, all rows j of b are needed.
        b = all_gather(b, -2, ctx.group)  # [*, c, N, N]
    else:
        # x_ij = Σ_k a_ki b_kj: columns j are local, all columns i of a are needed.
        a = all_gather(a, -1, ctx.group)  # [*, c, N, N]
    return mod.combine(a, b, z)  # [*, N/P, N, c_z] or [*, N, N/P, c_z]


def triangle_attention(
    mod: TriangleAttention, z: torch.Tensor, mask: torch.Tensor, ctx: DAPContext
) -> torch.Tensor:
    """Starting node on the row-sharded pair, ending node on the column-sharded pair."""
    # starting: z [*, N/P, N, c_z], mask [*, N/P, N]; ending: z [*, N, N/P, c_z], mask [*, N, N/P]
    if not mod.starting:
        # The ending-node module works on the transposed pair, whose rows are our columns.
        z = z.transpose(-2, -3)
        mask = mask.transpose(-1, -2)
    z = mod.layer_norm(z)  # [*, I/P, J, c_z]
    mask_bias = mod.mask_bias(mask)[..., :, None, None, :]  # [*, I/P, 1, 1, J]
    tri_bias, proj = mod.project(z)  # tri_bias: [*, I/P, J, H]
    # The bias of query j and key k is z_jk for every row i: it must be whole.
    tri_bias = all_gather(tri_bias, -3, ctx.group)  # [*, I, J, H]
    out = mod.mha.attend(*proj, mod.biases(mask_bias, _heads_first(tri_bias)))
    if not mod.starting:
        out = out.transpose(-2, -3)
    return out


def shared_dropout_residual(
    mod: SharedDropout, r: torch.Tensor, x: torch.Tensor, shard_dim: int, ctx: DAPContext
) -> torch.Tensor:
    """r + `SharedDropout`(x) on blocks r, x sharded along `shard_dim` (the module's
    `residual_masked`, so a fused residual update runs under DAP too).

    Every rank draws the mask of the whole tensor (it is shared along one axis, so it is
    small) and keeps its block: with the random state equal on the ranks of a group, as
    it must be for the replicated parts of the model anyway, the masks are those the
    unsharded model draws, in the same order.
    """
    if not mod.training or mod.p == 0.0:
        return r + x
    nd = x.dim()
    shared, sharded = mod.shared_dim % nd, shard_dim % nd
    shape = list(x.shape)
    shape[shared] = 1
    if sharded != shared:
        shape[sharded] *= ctx.size
    keep = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(1.0 - mod.p)
    if sharded != shared:
        keep = keep.narrow(sharded, ctx.rank * x.shape[sharded], x.shape[sharded])
    return mod.residual_masked(r, x, keep)
