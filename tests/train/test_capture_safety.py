"""CUDA-graph safety of the model and the loss, checked on the CPU with meta tensors.

A captured step must not copy host tensors to the device or read device values on the
host. With the model, the loss and the inputs on the `meta` device, both show up as ops:
a host tensor with data meeting a meta tensor (a copy a CUDA capture would refuse), and
`_local_scalar_dense` (`.item()`, `bool(t)`), which meta tensors cannot answer.
`torch.tensor(data, device=...)` and `Tensor.new_tensor(data)` copy from the host below
the dispatcher, so those two are watched by name. The first
step runs unwatched: cached constants (residue tables) are made there, as in the graph
warm-up.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from scalefold.losses import AlphaFoldLoss, LossConfig
from scalefold.model import AlphaFold, AlphaFoldConfig
from scalefold.utils.synthetic import synthetic_batch


class _HostTraffic(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [a for a in torch.utils._pytree.tree_leaves((args, kwargs))
                   if isinstance(a, torch.Tensor)]
        on_host = [t for t in tensors if t.device.type == "cpu" and t.dim() > 0]
        to_meta = kwargs.get("device") is not None and torch.device(kwargs["device"]).type == "meta"
        if on_host and (to_meta or any(t.device.type == "meta" for t in tensors)):
            self.found.append(f"{func}: host tensor {tuple(on_host[0].shape)}")
        if func is torch.ops.aten._local_scalar_dense.default:
            self.found.append(f"{func}: device value read on the host")
        return func(*args, **kwargs)

    def __enter__(self):
        found = self.found
        self._saved = (torch.tensor, torch.Tensor.new_tensor)
        tensor, new_tensor = self._saved

        def watched_tensor(data, *a, **kw):
            if kw.get("device") is not None and torch.device(kw["device"]).type != "cpu":
                found.append(f"torch.tensor(..., device={kw['device']}): host data")
            return tensor(data, *a, **kw)

        def watched_new_tensor(self_, data, *a, **kw):
            if torch.device(kw.get("device") or self_.device).type != "cpu":
                found.append("Tensor.new_tensor: host data")
            return new_tensor(self_, data, *a, **kw)

        torch.tensor, torch.Tensor.new_tensor = watched_tensor, watched_new_tensor
        return super().__enter__()

    def __exit__(self, *exc):
        torch.tensor, torch.Tensor.new_tensor = self._saved
        return super().__exit__(*exc)


def _step(model, loss_fn, batch, autocast: bool):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = model(batch)
    loss, terms = loss_fn(out, {k: v[..., -1] for k, v in batch.items()},
                          torch.ones(1, device="meta"))
    loss.backward()
    return loss


@pytest.mark.parametrize("swaps", ["none", "recompute_opm", "all"])
def test_model_and_loss_make_no_host_copies_or_reads(swaps):
    """The plain model, and with the from-outside swaps a graph may capture."""
    from scalefold.kernels import (
        apply_kernels,
        recompute_outer_product_mean,
        swap_gates,
        swap_linears,
        swap_outer_product_mean,
        swap_triangle_multiplication,
    )

    cfg = AlphaFoldConfig.tiny()
    torch.manual_seed(0)
    model = AlphaFold(cfg).to("meta").train()
    if swaps == "all":
        swap_outer_product_mean(model)  # before the recompute, which wraps the forward
    if swaps in ("recompute_opm", "all"):
        recompute_outer_product_mean(model)
    if swaps == "all":
        # The Triton LayerNorm falls back to PyTorch on meta tensors; with it, the
        # channels-first output LayerNorm's route through trimul runs too.
        apply_kernels(model, attention="eager", layer_norm="triton", layer_norm_output="compute")
        swap_triangle_multiplication(model, norm_kernel=True)
        swap_linears(model)
        swap_gates(model)
    loss_fn = AlphaFoldLoss(LossConfig.mlperf()).to("meta")
    batch = {k: v.to("meta") for k, v in
             synthetic_batch(cfg, 16, 8, 16, 2, num_iterations=2, seed=0).items()}
    _step(model, loss_fn, batch, autocast=False)  # warm-up: caches device constants
    watch = _HostTraffic()
    with watch:
        _step(model, loss_fn, batch, autocast=False)
    assert not watch.found, "\n".join(watch.found[:20])


def test_the_watch_catches_host_copies():
    x = torch.ones(3, device="meta")
    for make in (lambda: torch.tensor([1.0, 2.0, 3.0]).to("meta"),
                 lambda: x.new_tensor([1.0, 2.0, 3.0]),
                 lambda: torch.tensor([1.0, 2.0, 3.0], device="meta")):
        watch = _HostTraffic()
        with watch:
            _ = x + make()
        assert watch.found
