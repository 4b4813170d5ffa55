"""`parallelize_dap`: dynamic axial parallelism applied to a plain `AlphaFold` from outside.

The Evoformer, extra-MSA and template pair stacks (and their blocks) get a sharded
`forward`; nothing else changes. This is done the way FSDP2's `fully_shard` does it: each
module's class is switched to a subclass defined here whose only difference is `forward`,
so the module keeps its parameters, submodules, state-dict keys and `isinstance` identity,
and `copy.deepcopy` (the trainer's evaluation model) yields a parallelized copy.

Everything outside the stacks (embedders, structure module, heads, losses) runs replicated:
the same code on the same sample on every rank of the DAP group. A stack scatters its
replicated inputs (a local slice: no communication), runs the sharded blocks and gathers
its outputs. Design and costs: docs/DAP.md.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from scalefold.model.evoformer import (
    EvoformerBlock,
    EvoformerStack,
    ExtraMSABlock,
    ExtraMSAStack,
    run_blocks,
)
from scalefold.model.template import TemplatePairBlock, TemplatePairStack
from scalefold.parallel.comm import col_to_row, col_to_row_start, gather, row_to_col, scatter
from scalefold.parallel.layers import (
    DAPContext,
    outer_product_mean,
    row_attention_with_pair_bias,
    shared_dropout_residual,
    triangle_attention,
    triangle_multiplication,
)

GradReduction = Literal["sum", "scale", "none"]


# ----------------------------------------------------------------------------- blocks


def _msa_block_forward(
    block: EvoformerBlock | ExtraMSABlock,
    m: torch.Tensor,
    z: torch.Tensor,
    msa_mask: torch.Tensor,
    pair_mask: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One Evoformer or extra-MSA block; they differ only in their column attention."""
    # m: [*, S/P, N, c_m] rows  z: [*, N/P, N, c_z] rows
    # msa_mask: [*, S, N]  pair_mask: [*, N, N], whole on every rank
    ctx: DAPContext = block._dap
    g, core = ctx.group, block.core
    msa_row, msa_col = ctx.shard(msa_mask, -2), ctx.shard(msa_mask, -1)
    pair_row, pair_col = ctx.shard(pair_mask, -2), ctx.shard(pair_mask, -1)

    upd = row_attention_with_pair_bias(block.msa_att_row, m, z, msa_row, ctx)
    m = shared_dropout_residual(block.msa_dropout_row, m, upd, -3, ctx)
    m = row_to_col(m, g)  # [*, S, N/P, c_m]
    m = m + block.msa_att_col(m, msa_col)
    m = core.msa_transition.added_to(m, m)
    z = z + outer_product_mean(core.outer_product_mean, m, msa_col, msa_mask, ctx)
    # m is final here: with `overlap` its re-sharding runs behind the pair updates.
    m_rows = col_to_row_start(m, g) if ctx.overlap else None

    upd = triangle_multiplication(core.tri_mul_out, z, pair_row, ctx)
    z = shared_dropout_residual(core.pair_dropout_row, z, upd, -3, ctx)
    z = row_to_col(z, g)  # [*, N, N/P, c_z]
    upd = triangle_multiplication(core.tri_mul_in, z, pair_col, ctx)
    z = shared_dropout_residual(core.pair_dropout_row, z, upd, -2, ctx)
    z = col_to_row(z, g)  # [*, N/P, N, c_z]
    upd = triangle_attention(core.tri_att_start, z, pair_row, ctx)
    z = shared_dropout_residual(core.pair_dropout_row, z, upd, -3, ctx)
    z = row_to_col(z, g)  # [*, N, N/P, c_z]
    upd = triangle_attention(core.tri_att_end, z, pair_col, ctx)
    z = shared_dropout_residual(core.pair_dropout_col, z, upd, -2, ctx)
    z = core.pair_transition.added_to(z, z)
    if m_rows is None:
        return col_to_row(m, g), col_to_row(z, g)
    # The wait comes last so that in backward it runs first (autograd takes the latest
    # node first): the MSA gradient's all-to-all then overlaps the pair stack's backward.
    z = col_to_row(z, g)
    return m_rows.wait(), z


class DAPEvoformerBlock(EvoformerBlock):
    _dap: DAPContext

    def forward(self, m, z, msa_mask, pair_mask):
        return _msa_block_forward(self, m, z, msa_mask, pair_mask)


class DAPExtraMSABlock(ExtraMSABlock):
    _dap: DAPContext

    def forward(self, m, z, msa_mask, pair_mask):
        return _msa_block_forward(self, m, z, msa_mask, pair_mask)


class DAPTemplatePairBlock(TemplatePairBlock):
    _dap: DAPContext

    def forward(self, t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # t: [*, T, N/P, N, c_t] rows  mask: [*, 1, N, N] whole
        ctx = self._dap
        g = ctx.group
        row, col = ctx.shard(mask, -2), ctx.shard(mask, -1)
        upd = triangle_attention(self.tri_att_start, t, row, ctx)
        t = shared_dropout_residual(self.dropout_row, t, upd, -3, ctx)
        t = row_to_col(t, g)  # [*, T, N, N/P, c_t]
        upd = triangle_attention(self.tri_att_end, t, col, ctx)
        t = shared_dropout_residual(self.dropout_col, t, upd, -2, ctx)
        t = col_to_row(t, g)
        upd = triangle_multiplication(self.tri_mul_out, t, row, ctx)
        t = shared_dropout_residual(self.dropout_row, t, upd, -3, ctx)
        t = row_to_col(t, g)
        upd = triangle_multiplication(self.tri_mul_in, t, col, ctx)
        t = shared_dropout_residual(self.dropout_row, t, upd, -2, ctx)
        t = self.pair_transition.added_to(t, t)
        return col_to_row(t, g)


# ----------------------------------------------------------------------------- stacks


def _check_residues(n_res: int, ctx: DAPContext, stack: str) -> None:
    if n_res % ctx.size:
        raise ValueError(
            f"{stack}: the number of residues N={n_res} (the crop size) must be divisible "
            f"by the DAP size {ctx.size}; choose a crop size that is a multiple of it"
        )


def _pad_sequences(
    m: torch.Tensor, mask: torch.Tensor, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad the MSA's sequence axis (dim -3) to a multiple of `size` with masked rows.

    Masked rows change nothing that any loss reads: they are zero in the outer product
    mean (numerator and count) and get zero weight as keys of column attention, whose
    other inputs are per row. Only a column whose every row is masked (a padding residue)
    averages over the extra rows too.
    """
    pad = -m.shape[-3] % size
    if pad == 0:
        return m, mask
    # F.pad counts dimensions from the last: (c: 0, 0), (N: 0, 0), (S: 0, pad)
    return F.pad(m, (0, 0, 0, 0, 0, pad)), F.pad(mask, (0, 0, 0, pad))


class DAPEvoformerStack(EvoformerStack):
    _dap: DAPContext

    def forward(self, m, z, msa_mask, pair_mask):
        # m: [*, S, N, c_m]  z: [*, N, N, c_z], replicated
        ctx = self._dap
        _check_residues(z.shape[-2], ctx, "Evoformer")
        n_seq = m.shape[-3]
        m, msa_mask = _pad_sequences(m, msa_mask, ctx.size)
        m = scatter(m, -3, ctx.group)  # [*, S/P, N, c_m]
        z = scatter(z, -3, ctx.group)  # [*, N/P, N, c_z]
        m, z = run_blocks(self.blocks, m, z, msa_mask, pair_mask, self.activation_checkpointing)
        m = gather(m, -3, ctx.group)[..., :n_seq, :, :]
        z = gather(z, -3, ctx.group)
        s = self.linear(m[..., 0, :, :])
        return m, z, s


class DAPExtraMSAStack(ExtraMSAStack):
    _dap: DAPContext

    def forward(self, a, z, msa_mask, pair_mask) -> torch.Tensor:
        # a: [*, S_e, N, c_e]  z: [*, N, N, c_z], replicated
        ctx = self._dap
        _check_residues(z.shape[-2], ctx, "extra MSA stack")
        a, msa_mask = _pad_sequences(a, msa_mask, ctx.size)
        a = scatter(a, -3, ctx.group)
        z = scatter(z, -3, ctx.group)
        _, z = run_blocks(self.blocks, a, z, msa_mask, pair_mask, self.activation_checkpointing)
        return gather(z, -3, ctx.group)


class DAPTemplatePairStack(TemplatePairStack):
    _dap: DAPContext

    def forward(self, t: torch.Tensor, pair_mask: torch.Tensor) -> torch.Tensor:
        # t: [*, T, N, N, c_t] replicated  pair_mask: [*, N, N]
        ctx = self._dap
        _check_residues(t.shape[-2], ctx, "template pair stack")
        mask = pair_mask.unsqueeze(-3)
        t = scatter(t, -3, ctx.group)  # [*, T, N/P, N, c_t]
        recompute = self.activation_checkpointing and torch.is_grad_enabled()
        for block in self.blocks:
            if recompute:
                t = checkpoint(block, t, mask, use_reentrant=False)
            else:
                t = block(t, mask)
        # Gathered before the final LayerNorm so that its parameters stay replicated.
        return self.layer_norm(gather(t, -3, ctx.group))


# ------------------------------------------------------------------------- parallelize

_STACKS: dict[type[nn.Module], type[nn.Module]] = {
    EvoformerStack: DAPEvoformerStack,
    ExtraMSAStack: DAPExtraMSAStack,
    TemplatePairStack: DAPTemplatePairStack,
}
_BLOCKS: dict[type[nn.Module], type[nn.Module]] = {
    EvoformerBlock: DAPEvoformerBlock,
    ExtraMSABlock: DAPExtraMSABlock,
    TemplatePairBlock: DAPTemplatePairBlock,
}


def _grad_hook(ctx: DAPContext, mode: GradReduction):
    if mode == "sum":

        def hook(grad: torch.Tensor) -> torch.Tensor:
            grad = grad.clone()
            dist.all_reduce(grad, group=ctx.group)
            return grad

    else:

        def hook(grad: torch.Tensor) -> torch.Tensor:
            return grad * ctx.size

    return hook


def sharded_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters of the DAP blocks: each rank's gradient of them is a partial sum."""
    seen: dict[int, nn.Parameter] = {}
    for module in model.modules():
        if type(module) in _BLOCKS.values():
            for p in module.parameters():
                seen.setdefault(id(p), p)
    return list(seen.values())


def sync_dap_gradients(model: nn.Module, group: dist.ProcessGroup | None) -> None:
    """Sum the partial gradients of the sharded parameters over the DAP group (for
    `grad_reduction="none"`, e.g. to do it in buckets after gradient accumulation)."""
    grads = [p.grad for p in sharded_parameters(model) if p.grad is not None]
    if not grads or dist.get_world_size(group) == 1:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, group=group)
    for g, new in zip(grads, flat.split([g.numel() for g in grads])):
        g.copy_(new.view_as(g))


def parallelize_dap(
    model: nn.Module,
    group: dist.ProcessGroup | None,
    *,
    grad_reduction: GradReduction = "sum",
    overlap: bool = False,
) -> nn.Module:
    """Shard every Evoformer, extra-MSA and template pair stack in `model` over `group`.

    Works in place and returns `model`. All ranks of `group` must run the model on the
    same sample with the same random state (dropout masks are drawn identically).

    Parameters of the stacks' blocks see only this rank's block of the data, so their
    gradients are partial sums; `grad_reduction` says how they become the gradient of
    one-process training (every other parameter already has it on every rank):

    * "sum": all-reduced over `group` during backward; every rank then holds the gradient
      of one-process training, whatever data parallelism does next.
    * "scale": multiplied by the DAP size; exact when a mean over a group containing the
      whole DAP group follows, e.g. DDP over all ranks (mean over ranks = mean over
      samples, with no extra collective).
    * "none": left partial; call `sync_dap_gradients` yourself.

    `overlap`: each MSA block starts the column->row all-to-all of the MSA right after
    its outer product mean and completes it at the block's end, so it travels while the
    pair updates compute (and, in backward, while their backward runs); same results.
    """
    if grad_reduction not in ("sum", "scale", "none"):
        raise ValueError(f"unknown grad_reduction {grad_reduction!r}")
    ctx = DAPContext(group, overlap=overlap)
    if ctx.size == 1:
        return model
    stacks = [mod for mod in model.modules() if type(mod) in _STACKS]
    if not stacks:
        if any(type(mod) in _STACKS.values() for mod in model.modules()):
            raise ValueError("the model is already parallelized with DAP")
        raise ValueError("no Evoformer, extra-MSA or template pair stack in the model")
    for stack in stacks:
        for block in stack.blocks:
            if type(block) not in _BLOCKS:
                raise TypeError(f"no DAP version of {type(block).__name__}")
            block.__class__ = _BLOCKS[type(block)]
            block._dap = ctx
        stack.__class__ = _STACKS[type(stack)]
        stack._dap = ctx
    if grad_reduction != "none":
        hook = _grad_hook(ctx, grad_reduction)
        for p in sharded_parameters(model):
            p.register_hook(hook)
    return model


def new_dap_groups(
    dap_size: int,
) -> tuple[dist.ProcessGroup | None, dist.ProcessGroup | None]:
    """(DAP group, data-parallel group) of this rank; every rank must call it.

    Consecutive ranks form a DAP group (one node's GPUs: the all-to-alls need NVLink);
    ranks with the same position in their DAP groups form a data-parallel group. Ranks of
    a DAP group take the same sample: data-parallel index = rank // dap_size.
    """
    world, rank = dist.get_world_size(), dist.get_rank()
    if dap_size < 1 or world % dap_size:
        raise ValueError(f"DAP size {dap_size} must divide the world size {world}")
    dap_group = dp_group = None
    # new_group is collective over the whole world: create every group on every rank.
    for first in range(0, world, dap_size):
        ranks = list(range(first, first + dap_size))
        grp = dist.new_group(ranks)
        if rank in ranks:
            dap_group = grp
    for offset in range(dap_size):
        ranks = list(range(offset, world, dap_size))
        grp = dist.new_group(ranks)
        if rank in ranks:
            dp_group = grp
    return dap_group, dp_group
