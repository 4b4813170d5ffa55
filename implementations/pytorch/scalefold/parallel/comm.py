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


class _InFlight:
    """The work handles and send buffers of one started all-to-all and of its adjoint
    (the buffers must outlive the collective)."""

    work = grad_work = sent = grad_sent = None


def _split_leading(x: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    # [..., P*L, ...] -> [P, ..., L, ...] contiguous: the layout all_to_all_single sends.
    return x.unflatten(dim, (size, x.shape[dim] // size)).movedim(dim, 0).contiguous()


class _AllToAllStart(torch.autograd.Function):
    """Launch the all-to-all; the output buffer is valid only after `_AllToAllWait`.
    Backward: wait for the adjoint all-to-all that `_AllToAllWait.backward` launched."""

    @staticmethod
    def forward(ctx, x, scatter_dim, group, state):
        ctx.dim, ctx.state = scatter_dim, state
        inp = _split_leading(x, scatter_dim, group_size(group))
        out = torch.empty_like(inp)
        state.sent = inp
        state.work = dist.all_to_all_single(out, inp, group=group, async_op=True)
        return out  # [P, ...]: piece q came from rank q

    @staticmethod
    def backward(ctx, grad_buffer):
        state = ctx.state
        state.grad_work.wait()
        state.grad_work = state.grad_sent = None
        return grad_buffer.movedim(0, ctx.dim).flatten(ctx.dim, ctx.dim + 1), None, None, None


class _AllToAllWait(torch.autograd.Function):
    """Complete the all-to-all; backward launches the adjoint one without waiting."""

    @staticmethod
    def forward(ctx, buffer, gather_dim, group, state):
        ctx.dim, ctx.group, ctx.state = gather_dim, group, state
        state.work.wait()
        state.work = state.sent = None
        return buffer.movedim(0, gather_dim).flatten(gather_dim, gather_dim + 1)

    @staticmethod
    def backward(ctx, grad):
        state = ctx.state
        inp = _split_leading(grad, ctx.dim, group_size(ctx.group))
        out = torch.empty_like(inp)
        state.grad_sent = inp
        state.grad_work = dist.all_to_all_single(out, inp, group=ctx.group, async_op=True)
        return out, None, None, None


class PendingAllToAll:
    """An all-to-all in flight (`all_to_all_start`): the work between the start and
    `wait()` overlaps the collective. Backward mirrors it: the adjoint all-to-all starts
    when the gradient of `wait()`'s result arrives and completes where the forward
    started, overlapping the backward of the work in between."""

    def __init__(self, x: torch.Tensor, scatter_dim: int, gather_dim: int,
                 group: ProcessGroup) -> None:
        nd = x.dim()
        self._gather_dim, self._group = gather_dim % nd, group
        self._state = _InFlight()
        self._buffer = _AllToAllStart.apply(x, scatter_dim % nd, group, self._state)

    def wait(self) -> torch.Tensor:
        buffer, self._buffer = self._buffer, None
        if buffer is None:
            raise RuntimeError("wait() called twice on one all-to-all")
        return _AllToAllWait.apply(buffer, self._gather_dim, self._group, self._state)


class _Done:
    """A finished result with the interface of `PendingAllToAll` (a group of one)."""

    def __init__(self, x: torch.Tensor) -> None:
        self._x = x

    def wait(self) -> torch.Tensor:
        return self._x


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


def col_to_row_start(x: torch.Tensor, group: ProcessGroup) -> PendingAllToAll | _Done:
    """`col_to_row` started now and completed by the returned object's `wait()`."""
    if _trivial(group):
        return _Done(x)
    _check_divisible(x, -3, group_size(group), "all_to_all")
    return PendingAllToAll(x, scatter_dim=-3, gather_dim=-2, group=group)
