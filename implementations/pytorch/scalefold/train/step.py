"""One training step as a single callable, shared by the trainer and `scalefold bench step`.

A step: forward with the batch's recycling count (gradients through the last iteration
only), the MLPerf loss on the last iteration's features, backward, clipping to a global
gradient norm, Adam, and the SWA (EMA) update.

Two update paths:

- *plain*: `clip_grad_norm_` then `Adam.step()`. The caller may inspect the loss on the
  host between backward and the update (`before_update`), so a non-finite loss stops the
  run before the weights change. This is the reference's order.
- *fused*: `Adam(fused=True)` with the clip factor passed as its `grad_scale` and a
  device-side `found_inf` that skips the update when the gradient norm or the loss is not
  finite. No host synchronisation anywhere, which is what CUDA-graph capture needs
  (`scalefold.train.graphs`); the caller checks the loss after the step, and a step that
  raises has left the weights and Adam's state unchanged. With a `SinglePassUpdate`
  (`scalefold.kernels.optimizer`) the same clip, Adam and EMA run as two Triton launches
  over a table of every parameter instead of PyTorch's multi-tensor kernels.

Both give the same update (clip, then Adam) up to float rounding.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from scalefold.data.selection import last_iteration
from scalefold.kernels.optimizer import SinglePassUpdate
from scalefold.train.grad_sync import FlatGradSync
from scalefold.train.swa import WeightEMA

Batch = dict[str, torch.Tensor]


@dataclass
class StepOutputs:
    """Device tensors of one step; nothing here has been read back to the host."""

    loss: torch.Tensor  # [] total loss
    terms: dict[str, torch.Tensor]  # each [] (unweighted per-term losses, as the loss returns)
    grad_norm: torch.Tensor  # [] global L2 norm of the gradients before clipping

    def breakdown(self) -> dict[str, torch.Tensor]:
        return {"total": self.loss, **self.terms}

    def to_host(self) -> dict[str, float]:
        """Every value in one device-to-host copy (not one per term); waits for it."""
        return self.copy_to_host().values()

    def copy_to_host(self) -> HostCopy:
        """Start the copy of every value to the host without waiting for the device."""
        return HostCopy({**self.breakdown(), "grad_norm": self.grad_norm})


class HostCopy:
    """Named scalars on their way to pinned host memory, behind the work that makes them."""

    def __init__(self, named: dict[str, torch.Tensor]) -> None:
        self.names = list(named)
        stacked = torch.stack([v.detach().float().reshape(()) for v in named.values()])
        self.done: torch.cuda.Event | None = None
        if stacked.is_cuda:
            self.buffer = torch.empty(stacked.shape, dtype=stacked.dtype, pin_memory=True)
            self.buffer.copy_(stacked, non_blocking=True)
            self.done = torch.cuda.Event()
            self.done.record()
        else:
            self.buffer = stacked

    def values(self) -> dict[str, float]:
        if self.done is not None:
            self.done.synchronize()
        return dict(zip(self.names, self.buffer.tolist(), strict=True))


def grad_norm(params: list[nn.Parameter]) -> torch.Tensor:
    """Global L2 norm of the gradients as a device tensor (no host synchronisation)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros((), device=params[0].device)
    norms = torch._foreach_norm(grads)  # one fused launch per dtype/device group
    return torch.linalg.vector_norm(torch.stack(norms))


def fused_clip_into_adam(optimizer: torch.optim.Optimizer, params: list[nn.Parameter],
                         max_norm: float, guard: torch.Tensor | None = None) -> torch.Tensor:
    """Gradient clipping folded into fused Adam's unscale step; returns the norm.

    `clip_grad_norm_` multiplies every gradient by min(1, max_norm / (norm + 1e-6)) in an
    extra pass; fused Adam already divides gradients by `grad_scale` (the AMP hook) inside
    its one kernel, so grad_scale = max(1, (norm + 1e-6) / max_norm) gives the same update
    without that pass. `found_inf` skips the update (and undoes the step count) on the
    device when the norm, or any value of `guard` (the loss and its terms), is not finite.
    """
    norm = grad_norm(params)
    bad = ~torch.isfinite(norm)
    if guard is not None:
        bad = bad | ~torch.isfinite(guard.detach()).all()
    optimizer.grad_scale = torch.clamp((norm + 1e-6) / max_norm, min=1.0)
    optimizer.found_inf = bad.to(torch.float32)
    return norm


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate; a tensor lr (captured by a CUDA graph) in place."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def make_adam(params, lr: float, device: torch.device, fused: bool,
              capturable: bool = False) -> torch.optim.Adam:
    """The benchmark's Adam (betas 0.9/0.999, eps 1e-6, no weight decay, no amsgrad).

    `capturable` (CUDA graphs) keeps the step count and the learning rate on the device,
    so a captured step reads the current lr instead of the one baked in at capture.
    """
    kwargs: dict = {"betas": (0.9, 0.999), "eps": 1e-6, "weight_decay": 0.0, "amsgrad": False}
    if fused:
        kwargs["fused"] = True
    if capturable:
        if device.type != "cuda":
            raise ValueError("a capturable optimizer (CUDA graphs) needs a CUDA device")
        kwargs["capturable"] = True
        lr = torch.tensor(lr, dtype=torch.float32, device=device)
    return torch.optim.Adam(params, lr=lr, **kwargs)


class TrainStep:
    """forward → loss → backward → clip → Adam → EMA, with device-tensor outputs.

    `model` is what runs the forward (the plain model, or its DDP wrapper); `params` are
    the parameters the optimizer updates. `autocast` returns the precision context of
    the forward (a bf16 autocast, or a null context).
    """

    def __init__(
        self,
        model: nn.Module,
        params: list[nn.Parameter],
        optimizer: torch.optim.Optimizer,
        loss_fn: nn.Module,
        ema: WeightEMA,
        ema_model: nn.Module,
        max_grad_norm: float,
        fused: bool,
        autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
        grad_sync: FlatGradSync | None = None,
        single_pass: SinglePassUpdate | None = None,
    ) -> None:
        if fused and not optimizer.defaults.get("fused"):
            raise ValueError("the fused update path needs Adam(fused=True)")
        self.model = model
        self.params = params
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.ema = ema
        self.ema_model = ema_model
        self.max_grad_norm = max_grad_norm
        self.fused = fused
        self.autocast = autocast
        self.grad_sync = grad_sync
        # The fused path's clip, Adam and EMA as two Triton launches, where they can run
        self.single_pass = single_pass if single_pass is not None and single_pass.active \
            else None
        if self.single_pass is not None and not fused:
            raise ValueError("the single-pass update is a form of the fused update path")

    def before_capture(self) -> None:
        """Called by `GraphedTrainStep` before a capture that runs the update."""
        if self.single_pass is not None:
            self.single_pass.reserve_capture_table()

    def after_capture(self) -> None:
        """Called by `GraphedTrainStep` once a capture has ended."""
        if self.single_pass is not None:
            self.single_pass.fill_captured()

    def reset_grads(self) -> None:
        """Drop the gradients: backward then writes fresh ones without accumulating."""
        self.optimizer.zero_grad(set_to_none=True)

    def sync_grads(self) -> None:
        if self.grad_sync is not None:
            self.grad_sync(self.params)

    def update(self, loss: torch.Tensor, terms: dict[str, torch.Tensor]) -> StepOutputs:
        """Fused path only: clip folded into Adam, guarded on the device, then EMA."""
        # The loss zeroes a non-finite term in its total (as the reference does), so
        # the guard looks at every term: such a step must not update the weights.
        guard = torch.stack([loss.float().reshape(()),
                             *(t.float().reshape(()) for t in terms.values())])
        if self.single_pass is not None:
            return StepOutputs(loss, terms, self.single_pass(guard))
        norm = fused_clip_into_adam(self.optimizer, self.params, self.max_grad_norm, guard)
        self.optimizer.step()
        self.ema.update(self.ema_model)
        return StepOutputs(loss, terms, norm)

    def forward_backward(self, feats: Batch, use_clamped: torch.Tensor
                         ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with self.autocast():
            outputs = self.model(feats)
        loss, terms = self.loss_fn(outputs, last_iteration(feats), use_clamped)
        if self.grad_sync is not None:
            self.grad_sync.begin(self.params)
        loss.backward()
        if self.grad_sync is not None:
            self.grad_sync.collect(self.params)
        return loss.detach(), {k: v.detach() for k, v in terms.items()}

    def __call__(self, feats: Batch, use_clamped: torch.Tensor,
                 before_update: Callable[[StepOutputs], None] | None = None) -> StepOutputs:
        """One step. `before_update` (plain path only) sees the loss before the update and
        may raise to stop it; the fused path never synchronises with the host."""
        self.reset_grads()
        loss, terms = self.forward_backward(feats, use_clamped)
        self.sync_grads()
        if self.fused:
            return self.update(loss, terms)
        if before_update is not None:
            before_update(StepOutputs(loss, terms, torch.zeros((), device=loss.device)))
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        self.optimizer.step()
        self.ema.update(self.ema_model)
        return StepOutputs(loss, terms, norm.detach())
