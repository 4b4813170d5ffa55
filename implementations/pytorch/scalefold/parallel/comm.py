"""Collectives of dynamic axial parallelism as autograd functions.

Every function takes the local tensor of this rank and a `torch.distributed` process group
(the DAP group of one sample) and returns the local tensor of the result. Each backward is
the adjoint of its forward, so that a sharded computation differentiates exactly like the
unsharded one. Two conventions are used for "whole" tensors:

* *replicated* tensors (identical on every rank, computed by identical code, as the
  embedders and the structure module are) enter the sharded region with `scatter` and
  leave it with `gather`. Every rank then holds the whole gradient of a replicated
  tensor, which is what the identical code upstream expects.
* *per-rank* whole tensors (an operand gathered for a local contraction) come from
  `all_gather`; each rank's gradient of it is only its own partial contribution, so the
  backward sums them (`reduce_scatter`).

Dimensions may be negative. A group of size one makes every function the identity.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

ProcessGroup = dist.ProcessGroup | None

# torch 2.13 renamed the tensor collectives; older versions (>= 2.4) have only the old names.
_all_gather_single = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
_reduce_scatter_single = (
    getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
)


def group_size(group: ProcessGroup) -> int:
    return dist.get_world_size(group)


def group_rank(group: ProcessGroup) -> int:
    return dist.get_rank(group)


def _check_divisible(x: torch.Tensor, dim: int, size: int, what: str) -> None:
    if x.shape[dim] % size:
        raise ValueError(
            f"{what}: dimension {dim} of a tensor of shape {tuple(x.shape)} is not "
            f"divisible by the DAP size {size}"
        )


def _chunk(x: torch.Tensor, dim: int, group: ProcessGroup) -> torch.Tensor:
    size = group_size(group)
    _check_divisible(x, dim, size, "scatter")
    n = x.shape[dim] // size
    # A copy, not a view (which .contiguous() returns when the block happens to be
    # contiguous): a view would keep the whole replicated tensor alive through the stack.
    return x.narrow(dim, group_rank(group) * n, n).clone(memory_format=torch.contiguous_format)


def _all_gather(x: torch.Tensor, dim: int, group: ProcessGroup) -> torch.Tensor:
    size = group_size(group)
    dim = dim % x.dim()
    x = x.contiguous()
    # The collective concatenates along dim 0: [P*L0, ...] viewed as [P, L0, ...].
    out = x.new_empty((size * x.shape[0], *x.shape[1:]))
    _all_gather_single(out, x, group=group)
    out = out.view(size, *x.shape)
    # out: [P, ..., L, ...] -> [..., P*L, ...] with rank-major order along `dim`.
    return out.movedim(0, dim).flatten(dim, dim + 1)


def _reduce_scatter(x: torch.Tensor, dim: int, group: ProcessGroup) -> torch.Tensor:
    size = group_size(group)
    _check_divisible(x, dim, size, "reduce_scatter")
    dim = dim % x.dim()
    # [..., P*L, ...] -> [P, ..., L, ...]: the collective splits its input along dim 0.
    inp = x.unflatten(dim, (size, x.shape[dim] // size)).movedim(dim, 0).contiguous()
    out = x.new_empty(inp.shape[1:])
    _reduce_scatter_single(out, inp.flatten(0, 1), group=group)
    return out


def _all_to_all(
    x: torch.Tensor, scatter_dim: int, gather_dim: int, group: ProcessGroup
) -> torch.Tensor:
    size = group_size(group)
    _check_divisible(x, scatter_dim, size, "all_to_all")
    nd = x.dim()
    s, g = scatter_dim % nd, gather_dim % nd
    # Piece q of the scattered dimension goes to rank q; pieces travel along dim 0.
    inp = x.unflatten(s, (size, x.shape[s] // size)).movedim(s, 0).contiguous()
    out = torch.empty_like(inp)
    dist.all_to_all_single(out, inp, group=group)
    # out[q] is rank q's block of the gathered dimension: put it in rank order there.
    return out.movedim(0, g).flatten(g, g + 1)


class _Scatter(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dim, group):
        ctx.dim, ctx.group = dim, group
        return _chunk(x, dim, group)

    @staticmethod
    def backward(ctx, grad):
        return _all_gather(grad, ctx.dim, ctx.group), None, None


class _Gather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dim, group):
        ctx.dim, ctx.group = dim, group
        return _all_gather(x, dim, group)

    @staticmethod
    def backward(ctx, grad):
        # The consumer is replicated, so every rank holds the same whole gradient.
        return _chunk(grad, ctx.dim, ctx.group), None, None


class _AllGather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dim, group):
        ctx.dim, ctx.group = dim, group
        return _all_gather(x, dim, group)

    @staticmethod
    def backward(ctx, grad):
        return _reduce_scatter(grad, ctx.dim, ctx.group), None, None


class _ReduceScatter(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dim, group):
        ctx.dim, ctx.group = dim, group
        return _reduce_scatter(x, dim, group)

    @staticmethod
    def backward(ctx, grad):
        return _all_gather(grad, ctx.dim, ctx.group), None, None


class _AllToAll(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scatter_dim, gather_dim, group):
        ctx.dims, ctx.group = (scatter_dim, gather_dim), group
        return _all_to_all(x, scatter_dim, gather_dim, group)

    @staticmethod
    def backward(ctx, grad):
        scatter_dim, gather_dim = ctx.dims
        return _all_to_all(grad, gather_dim, scatter_dim, ctx.group), None, None, None


def _trivial(group: ProcessGroup) -> bool:
    return group_size(group) == 1


def scatter(x: torch.Tensor, dim: int, group: ProcessGroup) -> torch.Tensor:
    """Replicated whole tensor -> this rank's block along `dim`. Backward: all-gather."""
    return x if _trivial(group) else _Scatter.apply(x, dim, group)


def gather(x: torch.Tensor, dim: int, group: ProcessGroup) -> torch.Tensor:
    """Blocks along `dim` -> the replicated whole tensor. Backward: keep own block."""
    return x if _trivial(group) else _Gather.apply(x, dim, group)


def all_gather(x: torch.Tensor, dim: int, group: ProcessGroup) -> torch.Tensor:
    """Blocks along `dim` -> the whole tensor, used by per-rank (sharded) computation.
    Backward: reduce-scatter (sum of every rank's partial gradient, then own block)."""
    return x if _trivial(group) else _AllGather.apply(x, dim, group)


def reduce_scatter(x: torch.Tensor, dim: int, group: ProcessGroup) -> torch.Tensor:
    """Per-rank partial sums of a whole tensor -> this rank's block of the sum along `dim`.
    Backward: all-gather."""
    return x if _trivial(group) else _ReduceScatter.apply(x, dim, group)


def all_to_all(
    x: torch.Tensor, scatter_dim: int, gather_dim: int, group: ProcessGroup
) -> torch.Tensor:
    """Re-shard: blocks along `gather_dim` -> blocks along `scatter_dim`.
    Backward: the inverse all-to-all."""
    return x if _trivial(group) else _AllToAll.apply(x, scatter_dim, gather_dim, group)


def row_to_col(x: torch.Tensor, group: ProcessGroup) -> torch.Tensor:
    """[*, R/P, C, c] (rows sharded) -> [*, R, C/P, c] (columns sharded)."""
    return all_to_all(x, scatter_dim=-2, gather_dim=-3, group=group)


def col_to_row(x: torch.Tensor, group: ProcessGroup) -> torch.Tensor:
    """[*, R, C/P, c] (columns sharded) -> [*, R/P, C, c] (rows sharded)."""
    return all_to_all(x, scatter_dim=-3, gather_dim=-2, group=group)
