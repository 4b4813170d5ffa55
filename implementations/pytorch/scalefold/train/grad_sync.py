"""Data-parallel gradient averaging that CUDA graphs can hold: one flat gradient buffer.

DDP's reducer is not captured in a CUDA graph, so a graphed step on several ranks averages
its gradients through a persistent flat buffer instead (`SpeedConfig.grad_sync`):

- `FlatGradSync` ("flat"): backward ends by copying the gradients into the buffer, and one
  all-reduce of the whole buffer runs after backward, between the backward graph and the
  update graph (two graphs per recycling count; the collective is never captured).
- `BucketedGradSync` ("bucketed"): the buffer is cut into buckets in the order backward
  produces the gradients, and each bucket's all-reduce is launched from backward as soon
  as its gradients exist, so communication runs behind the rest of backward (what DDP's
  buckets do, here inside the one graph of the whole step: the collectives are captured).

Both average in place over the buffer with a sum then a division by the world size, so
they give the same bits. The buffer's layout is fixed by the first step, from the
parameters that received a gradient (the same on every rank: which parameters take part
is fixed by the model's configuration); parameters without one stay `None` and Adam
skips them, as under DDP.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
import torch.distributed as dist
from torch import nn

from scalefold.train.config import GRAD_BUCKET_BYTES as BUCKET_BYTES


class FlatGradSync:
    """Gradient averaging over a process group as one all-reduce of a flat buffer.

    Backward (one graph) ends by copying its gradients into the persistent flat buffer
    (`collect`) and pointing each parameter's `.grad` at its view of it; the all-reduce
    (`__call__`) runs between the graphs, and the update (a second graph) reads the same
    views.

    Backward writes fresh gradients (`.grad` is None before it, so autograd hands each
    parameter its gradient without a kernel) and one multi-tensor copy moves them into
    the buffer, a few launches for all of them. Accumulating into views that already
    exist would launch one add kernel per parameter instead, thousands a step.
    """

    # Whether the average is complete when backward returns (then the whole step can be
    # one graph): here it is not, `__call__` does it after backward.
    reduces_in_backward = False

    def __init__(self, group=None, world_size: int = 1) -> None:
        self.group = group
        self.world_size = world_size
        self.flat: torch.Tensor | None = None  # made at the first collect
        self._used: list[nn.Parameter] = []
        self._views: list[torch.Tensor] = []

    def _attach(self, params: list[nn.Parameter], order: list[int] | None = None) -> None:
        """The flat layout: the parameters with a gradient, in `order` (indices into
        `params`; default: their order in `params`)."""
        if order is None:
            order = [i for i, p in enumerate(params) if p.grad is not None]
        used = [params[i] for i in order]
        if not used:
            raise ValueError("flat gradient sync: no parameter received a gradient")
        dtypes = {p.grad.dtype for p in used}
        if len(dtypes) != 1:
            raise ValueError(f"flat gradient sync needs one gradient dtype, got {dtypes}")
        flat = torch.zeros(sum(p.numel() for p in used), dtype=dtypes.pop(),
                           device=used[0].device)
        offsets = [0]
        for p in used:
            offsets.append(offsets[-1] + p.numel())
        self._views = [flat[a:b].view_as(p) for p, a, b in zip(used, offsets, offsets[1:],
                                                                 strict=False)]
        self._used = used
        self.flat = flat

    def _check_same_set(self, params: list[nn.Parameter]) -> None:
        if any(p.grad is None for p in self._used) or sum(
                p.grad is not None for p in params) != len(self._used):
            raise RuntimeError("flat gradient sync: the parameters that received a gradient "
                               "changed after the first step; the flat layout assumes a "
                               "fixed set")

    def begin(self, params: list[nn.Parameter]) -> None:
        """Before backward (nothing to do here; see `BucketedGradSync`)."""

    def collect(self, params: list[nn.Parameter]) -> None:
        """After backward: this step's gradients into the flat buffer, `.grad` its views."""
        if self.flat is None:
            self._attach(params)
        self._check_same_set(params)
        torch._foreach_copy_(self._views, [p.grad for p in self._used])
        for p, view in zip(self._used, self._views, strict=True):
            p.grad = view

    def _average(self) -> None:
        if dist.is_initialized():  # one rank too (torchrun W = 1): the same collective
            dist.all_reduce(self.flat, group=self.group)
        if self.world_size > 1:
            self.flat.div_(self.world_size)

    def __call__(self, params: list[nn.Parameter]) -> None:
        """The average over the group, in place in the flat buffer (after `collect`)."""
        if self.flat is None:
            self.collect(params)
        self._average()


@dataclass
class _Bucket:
    members: list[int]  # indices into the step's parameters, in the buffer's order
    views: list[torch.Tensor]  # each member's view of the flat buffer
    flat: torch.Tensor  # this bucket's slice of the flat buffer


class BucketedGradSync(FlatGradSync):
    """The flat buffer reduced bucket by bucket from inside backward.

    Each parameter has a post-accumulate-gradient hook. When the last gradient of a bucket
    arrives, one multi-tensor copy moves the bucket's gradients into its slice of the
    buffer and its all-reduce is launched asynchronously (on NCCL's own stream, behind the
    backward kernels still to come); `collect`, after backward, waits for every bucket and
    divides by the world size. Buckets are launched strictly in their index order on every
    rank (a bucket ready early waits for the ones before it), so the ranks' collectives
    match even if their backward orders differed.

    The first step learns the layout: it records the order in which gradients become
    ready, takes rank 0's order on every rank, cuts it into buckets of about
    `bucket_bytes`, and averages that step like `FlatGradSync` (one all-reduce after
    backward). From the second step on, the average is complete when backward returns,
    so the whole step (forward, backward with its collectives, the update) is one CUDA
    graph.
    """

    reduces_in_backward = True

    def __init__(self, group=None, world_size: int = 1,
                 bucket_bytes: int = BUCKET_BYTES) -> None:
        super().__init__(group, world_size)
        if bucket_bytes <= 0:
            raise ValueError(f"bucket_bytes must be positive, got {bucket_bytes}")
        self.bucket_bytes = bucket_bytes
        self.buckets: list[_Bucket] = []
        self._params: list[nn.Parameter] = []
        self._hooks: list = []
        self._bucket_of: dict[int, int] = {}
        self._order: list[int] = []  # first step: parameter indices in gradient order
        self._pending: list[int] = []  # per bucket: gradients still to arrive this step
        self._next = 0  # the next bucket to launch
        self._works: list = []
        self._armed = False  # inside this sync's backward
        self._reduced = False  # this step's average was completed by `collect`

    def begin(self, params: list[nn.Parameter]) -> None:
        if not self._hooks:
            self._params = list(params)
            self._hooks = [p.register_post_accumulate_grad_hook(partial(self._ready, i))
                           for i, p in enumerate(self._params) if p.requires_grad]
        elif len(params) != len(self._params) or any(
                p is not q for p, q in zip(params, self._params, strict=False)):
            raise RuntimeError("bucketed gradient sync: called with other parameters than "
                               "its first step's")
        self._armed = True
        self._order = []
        self._pending = [len(b.members) for b in self.buckets]
        self._next = 0
        self._works = []

    def _ready(self, index: int, param: nn.Parameter) -> None:
        """Post-accumulate hook: `param` (the step's parameter `index`) has its gradient."""
        if not self._armed:
            return
        if not self.buckets:
            self._order.append(index)
            return
        b = self._bucket_of.get(index)
        if b is None:
            raise RuntimeError(f"bucketed gradient sync: parameter {index} received a "
                               "gradient but had none in the first step; the layout "
                               "assumes a fixed set")
        self._pending[b] -= 1
        while self._next < len(self.buckets) and self._pending[self._next] == 0:
            self._launch(self._next)
            self._next += 1

    def _launch(self, b: int) -> None:
        bucket = self.buckets[b]
        grads = [self._params[i].grad for i in bucket.members]
        torch._foreach_copy_(bucket.views, grads)
        for i, view in zip(bucket.members, bucket.views, strict=True):
            self._params[i].grad = view
        if dist.is_initialized():
            self._works.append(dist.all_reduce(bucket.flat, group=self.group,
                                               async_op=True))

    def _agreed_order(self, order: list[int]) -> list[int]:
        """Rank 0's gradient order, on every rank of the group."""
        if not dist.is_initialized():
            return order
        # NCCL moves device tensors only; gloo takes host ones.
        nccl = dist.get_backend(self.group) == "nccl" and order
        device = self._params[order[0]].device if nccl else torch.device("cpu")
        sizes = [None] * dist.get_world_size(self.group)
        dist.all_gather_object(sizes, len(order), group=self.group)
        if len(set(sizes)) != 1:
            raise RuntimeError(f"bucketed gradient sync: ranks have gradients for different "
                               f"numbers of parameters ({sizes})")
        t = torch.tensor(order, dtype=torch.int64, device=device)
        src = 0 if self.group is None else dist.get_global_rank(self.group, 0)
        dist.broadcast(t, src=src, group=self.group)
        return t.tolist()

    def _build_buckets(self, order: list[int]) -> None:
        self._attach(self._params, order)
        self.buckets, self._bucket_of = [], {}
        start, size, offset = 0, 0, 0
        itemsize = self.flat.element_size()
        for k, i in enumerate(order):
            size += self._params[i].numel()
            if size * itemsize >= self.bucket_bytes or k == len(order) - 1:
                members = order[start:k + 1]
                for m in members:
                    self._bucket_of[m] = len(self.buckets)
                self.buckets.append(_Bucket(members, self._views[start:k + 1],
                                            self.flat[offset:offset + size]))
                offset += size
                start, size = k + 1, 0

    def collect(self, params: list[nn.Parameter]) -> None:
        self._armed = False
        if not self.buckets:  # the first step: learn the layout, average after backward
            used = {i for i, p in enumerate(self._params) if p.grad is not None}
            if set(self._order) != used or len(self._order) != len(used):
                raise RuntimeError("bucketed gradient sync: the gradient hooks saw other "
                                   "parameters than those with a gradient")
            self._build_buckets(self._agreed_order(self._order))
            super().collect(params)
            self._reduced = False
            return
        if self._next != len(self.buckets):
            missing = [self._params[i].shape for b in self.buckets[self._next:]
                       for i in b.members if self._params[i].grad is None][:3]
            raise RuntimeError("bucketed gradient sync: the parameters that received a "
                               "gradient changed after the first step (none for shapes "
                               f"{missing}); the layout assumes a fixed set")
        self._check_same_set(params)
        for work in self._works:
            work.wait()  # on CUDA: the current stream waits for NCCL's, the host does not
        self._works = []
        if self.world_size > 1:
            self.flat.div_(self.world_size)
        self._reduced = True

    def __call__(self, params: list[nn.Parameter]) -> None:
        if self._reduced:
            self._reduced = False
            return
        super().__call__(params)
