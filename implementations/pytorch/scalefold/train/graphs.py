"""The whole training step captured as CUDA graphs, one per input shape.

Training shapes are static (fixed crop, padded MSA and templates); only the recycling
count changes from step to step, so a handful of graphs (one per count) cover a run.
Each graph holds forward, loss, backward, the clip folded into fused Adam, and the EMA
update: one launch replaces tens of thousands (docs/PERFORMANCE.md).

Capture belongs to initialisation (before `run_start`): `capture()` warms up and records
a graph for each example batch given, then puts the weights, Adam's state and the SWA
copy back exactly as they were, so the warm-up steps leave no trace in the run.

What a captured step needs, and `TrainStep` provides on its fused path: no host
synchronisation, an optimizer with its step count and learning rate on the device
(`make_adam(capturable=True)`; change the lr with `set_lr`, in place), and dropout from
the default CUDA generator (graph-safe: re-seeding before a replay gives the same masks
per seed as a fresh capture would).

All graphs share one memory pool. Each graph is self-contained: gradients and
activations live and die inside one replay, and only the small outputs (loss, terms,
gradient norm) stay referenced, so any replay order is safe.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from scalefold.train.step import Batch, StepOutputs, TrainStep

Signature = tuple[tuple[str, tuple[int, ...], torch.dtype], ...]


def signature(feats: Batch, use_clamped: torch.Tensor) -> Signature:
    """What a graph is specialised to: every input's name, shape and dtype."""
    items = sorted(feats.items()) + [("<use_clamped>", use_clamped)]
    return tuple((k, tuple(v.shape), v.dtype) for k, v in items)


def _host_copy(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu", copy=True)


@contextlib.contextmanager
def preserved_training_state(model: nn.Module, optimizer: torch.optim.Optimizer,
                             ema, keep_grads: bool = False) -> Iterator[None]:
    """Run the body, then restore weights, Adam's state and the EMA *in place*.

    In place because captured graphs hold the tensors' addresses. Adam state that did not
    exist before (first steps ever) is zeroed, which is what a fresh Adam state is.
    Gradients are dropped, or zeroed in place with `keep_grads` (views of a flat buffer
    that graphs write).

    The saved copies are kept in host memory: the body (warm-up steps and captures) is
    where a run's GPU memory peaks, and device copies of the weights, the EMA and Adam's
    moments (~1.4 GiB at the benchmark's 93M parameters) would add to that peak.
    """
    params = list(model.parameters())
    # The optimizer's own parameters: the model's, or one flat parameter over them.
    opt_params = [p for g in optimizer.param_groups for p in g["params"]]
    saved_params = [_host_copy(p) for p in params]
    saved_opt = {
        id(p): {k: (_host_copy(v) if isinstance(v, torch.Tensor) else v)
                for k, v in optimizer.state[p].items()}
        for p in opt_params if p in optimizer.state
    }
    saved_lrs = [g["lr"].clone() if isinstance(g["lr"], torch.Tensor) else g["lr"]
                 for g in optimizer.param_groups]
    saved_shadow = [_host_copy(s) for s in ema.shadow]
    saved_updates = ema.num_updates
    try:
        yield
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved_params, strict=True):
                p.copy_(s)
            for p in opt_params:
                state = optimizer.state.get(p)
                if not state:
                    continue
                before = saved_opt.get(id(p), {})
                for k, v in state.items():
                    if not isinstance(v, torch.Tensor):
                        continue
                    old = before.get(k)
                    if isinstance(old, torch.Tensor):
                        v.copy_(old)
                    else:
                        v.zero_()
            for g, lr in zip(optimizer.param_groups, saved_lrs, strict=True):
                if isinstance(g["lr"], torch.Tensor):
                    g["lr"].copy_(lr)
                else:
                    g["lr"] = lr
            for s, old in zip(ema.shadow, saved_shadow, strict=True):
                s.copy_(old)
            ema.num_updates = saved_updates
            for p in params:
                if keep_grads and p.grad is not None:
                    p.grad.zero_()
                else:
                    p.grad = None


class GraphedTrainStep:
    """Replays a captured `TrainStep` (fused path) for inputs of a captured signature.

    With a `FlatGradSync` on the step (several data-parallel ranks), each signature gets
    two graphs, forward + backward and the update, and the gradient all-reduce runs
    between their replays, outside any graph: the collective needs no capture support
    from the backend, and one flat all-reduce replaces DDP's buckets. A
    `BucketedGradSync` completes the average inside backward (its bucket all-reduces are
    captured with it), so the step stays one graph.
    """

    def __init__(self, step: TrainStep, warmup_steps: int = 3) -> None:
        if not step.fused:
            raise ValueError("CUDA graphs need the fused update path (no host sync): "
                             "build TrainStep with fused=True and a capturable fused Adam")
        if not all(g.get("capturable") for g in step.optimizer.param_groups):
            raise ValueError("CUDA graphs need Adam(capturable=True): see make_adam")
        device = step.params[0].device
        if device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device; the model is on {device}")
        self.step = step
        self.device = device
        self.warmup_steps = warmup_steps
        self.pool = torch.cuda.graph_pool_handle()
        # signature -> (graphs, static inputs, static use_clamped, outputs)
        self._graphs: dict[Signature, tuple[list[torch.cuda.CUDAGraph], Batch, torch.Tensor,
                                            StepOutputs]] = {}

    @property
    def signatures(self) -> list[Signature]:
        return list(self._graphs)

    def capture(self, examples: list[tuple[Batch, torch.Tensor]]) -> None:
        """Warm up and capture one graph per example's signature, leaving the training
        state (weights, Adam, EMA) as it was.

        Every shape is warmed up before any is captured, and the allocator's cache is
        emptied in between: a graph's pool keeps its activations reserved, so an eager
        warm-up after a capture would need a second step's worth of memory.
        """
        step = self.step
        todo: dict[Signature, tuple[Batch, torch.Tensor]] = {}
        for feats, use_clamped in examples:
            sig = signature(feats, use_clamped)
            if sig not in self._graphs and sig not in todo:
                todo[sig] = ({k: v.to(self.device).clone() for k, v in feats.items()},
                             use_clamped.to(self.device).clone())
        if not todo:
            return
        current = torch.cuda.current_stream(self.device)
        split = step.grad_sync is not None and not step.grad_sync.reduces_in_backward
        with preserved_training_state(step.ema_model, step.optimizer, step.ema,
                                      keep_grads=step.grad_sync is not None):
            # Warm-up on a side stream (lazy initialisation, Triton compilation and
            # cuBLAS workspaces happen outside the capture), as PyTorch requires.
            side = torch.cuda.Stream(self.device)
            side.wait_stream(current)
            with torch.cuda.stream(side):
                for static, static_uc in todo.values():
                    for _ in range(self.warmup_steps):
                        step(static, static_uc)
            current.wait_stream(side)
            step.reset_grads()
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            for sig, (static, static_uc) in todo.items():
                if split:
                    fwd_bwd, upd = torch.cuda.CUDAGraph(), torch.cuda.CUDAGraph()
                    with torch.cuda.graph(fwd_bwd, pool=self.pool):
                        step.reset_grads()
                        loss, terms = step.forward_backward(static, static_uc)
                    step.before_capture()
                    with torch.cuda.graph(upd, pool=self.pool):
                        outputs = step.update(loss, terms)
                    step.after_capture()
                    graphs = [fwd_bwd, upd]
                else:
                    whole = torch.cuda.CUDAGraph()
                    step.before_capture()
                    with torch.cuda.graph(whole, pool=self.pool):
                        outputs = step(static, static_uc)
                    step.after_capture()
                    # Gradients belong to the graph that made them; drop the references
                    # so the next capture may reuse their memory.
                    step.reset_grads()
                    graphs = [whole]
                self._graphs[sig] = (graphs, static, static_uc, outputs)
        torch.cuda.synchronize(self.device)

    def has(self, feats: Batch, use_clamped: torch.Tensor) -> bool:
        return signature(feats, use_clamped) in self._graphs

    def __call__(self, feats: Batch, use_clamped: torch.Tensor) -> StepOutputs:
        """Copy the inputs into the captured buffers and replay; the returned tensors are
        overwritten by the next replay of the same graph."""
        sig = signature(feats, use_clamped)
        entry = self._graphs.get(sig)
        if entry is None:
            shapes = {k: s for k, s, _ in sig}
            raise KeyError(f"no CUDA graph captured for these input shapes: {shapes}")
        graphs, static, static_uc, outputs = entry
        for k, v in feats.items():
            static[k].copy_(v, non_blocking=True)
        static_uc.copy_(use_clamped, non_blocking=True)
        first_ema_update = self.step.ema.num_updates == 0
        graphs[0].replay()
        if len(graphs) == 2:
            self.step.sync_grads()  # the all-reduce, between backward and the update
            graphs[1].replay()
        ema = self.step.ema
        if first_ema_update:
            # The graph always blends (it was captured after warm-up updates); the EMA's
            # first update is a copy of the weights, as in eager mode.
            ema.copy_from(self.step.ema_model)
        else:
            ema.num_updates += 1
        return outputs
