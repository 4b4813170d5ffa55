"""The matvec-bias-gradient Linear: the same parameters, loss and gradients as `Linear`."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from scalefold.data.selection import last_iteration
from scalefold.kernels import MatvecBiasGradLinear, swap_linears
from scalefold.losses import AlphaFoldLoss, LossConfig
from scalefold.model import AlphaFold, AlphaFoldConfig
from scalefold.model.primitives import Linear
from scalefold.utils.synthetic import synthetic_batch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def _loss_and_grads(swap: bool, device: str, bf16: bool):
    torch.manual_seed(0)
    model = AlphaFold(AlphaFoldConfig.tiny()).to(device).eval()
    names_before = list(model.state_dict())
    if swap:
        params = [id(p) for p in model.parameters()]
        swap_linears(model)
        assert [id(p) for p in model.parameters()] == params
        assert list(model.state_dict()) == names_before
        assert any(isinstance(m, MatvecBiasGradLinear) for m in model.modules())
    batch = synthetic_batch(None, n_res=14, n_clust=5, n_extra=7, n_templ=1,
                            num_iterations=1, device=device)
    with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
        out = model(batch)
    loss, _ = AlphaFoldLoss(LossConfig.mlperf()).to(device)(out, last_iteration(batch), True)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is None or g.dtype == torch.float32 for g in grads)
    return loss.detach(), torch.cat([g.flatten() for g in grads if g is not None])


@pytest.mark.parametrize("device", DEVICES)
def test_same_loss_and_gradients_fp32(device):
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    l0, g0 = _loss_and_grads(False, device, bf16=False)
    l1, g1 = _loss_and_grads(True, device, bf16=False)
    assert rel(l1, l0) < 1e-6
    assert rel(g1, g0) < 1e-5


@pytest.mark.parametrize("device", DEVICES)
def test_same_gradients_under_bf16_autocast(device):
    """bf16: the same casts as autocast's linear; only the bias sums' order differs."""
    l0, g0 = _loss_and_grads(False, device, bf16=True)
    l1, g1 = _loss_and_grads(True, device, bf16=True)
    assert rel(l1, l0) < 1e-3
    assert rel(g1, g0) < 2e-2


def test_weight_casts_once_per_scope_without_gradients():
    """Inside a scope and without gradients each parameter is cast once; with gradients,
    or outside a scope, every call casts; a new scope sees an updated weight."""
    from scalefold.kernels._autocast import WeightCasts

    casts = WeightCasts()
    w = torch.nn.Parameter(torch.randn(4, 3))
    with torch.no_grad():
        assert casts.cast(w, torch.bfloat16) is not casts.cast(w, torch.bfloat16)  # no scope
    with casts.scope():
        with torch.no_grad():
            a = casts.cast(w, torch.bfloat16)
            assert casts.cast(w, torch.bfloat16) is a and a.grad_fn is None
        with torch.inference_mode():
            c = casts.cast(w, torch.bfloat16)
            assert c is not a and casts.cast(w, torch.bfloat16) is c
        b = casts.cast(w, torch.bfloat16)
        assert b is not a and b.grad_fn is not None  # the differentiated copy has a path
        assert casts.cast(w, torch.bfloat16) is not b  # with gradients: one cast per call
        assert casts.cast(w, torch.float32) is w
    with torch.no_grad():
        w.add_(1.0)
        with casts.scope():
            assert torch.equal(casts.cast(w, torch.bfloat16), w.detach().bfloat16())


@pytest.mark.parametrize("grad", [True, False])
def test_cached_casts_add_no_guard_on_a_parameter(grad):
    """Compiled modules with the shared casts (the compiled glue's Linears) compile once
    for all instances: tracing must not read a parameter's id (an id guard recompiles
    for every instance and, past Dynamo's limit, leaves the glue eager)."""
    from scalefold.kernels._autocast import WeightCasts

    casts = WeightCasts()
    torch.manual_seed(0)
    mods = [swap_linears(torch.nn.Sequential(Linear(6, 6)), casts) for _ in range(2)]
    for m in mods:
        m.compile(backend="eager")
    x = torch.randn(3, 6)
    torch._dynamo.reset()
    with torch.set_grad_enabled(grad), torch.autocast("cpu", dtype=torch.bfloat16), casts.scope():
        mods[0](x)
        with torch._dynamo.config.patch(error_on_recompile=True):
            mods[1](x)


def _recycled_loss_and_grads(cached: bool):
    """A tiny model's recycled forward (two iterations without gradients, then one with)
    under CPU bf16 autocast, the swapped Linears sharing a WeightCasts when `cached`."""
    from scalefold.kernels._autocast import WeightCasts

    torch.manual_seed(0)
    model = AlphaFold(AlphaFoldConfig.tiny()).eval()
    casts = WeightCasts() if cached else None
    swap_linears(model, casts)
    batch = synthetic_batch(None, n_res=14, n_clust=5, n_extra=7, n_templ=1,
                            num_iterations=3, device="cpu")
    no_grad_callers, grad_calls = set(), []
    for m in model.modules():
        if isinstance(m, MatvecBiasGradLinear):
            m.register_forward_hook(lambda mod, *_: grad_calls.append(id(mod))
                                    if torch.is_grad_enabled() else no_grad_callers.add(id(mod)))
    scope = casts.scope() if cached else torch.autocast("cpu", enabled=True)
    with torch.autocast("cpu", dtype=torch.bfloat16), scope:
        out = model(batch)
        hits = 0 if casts is None else sum(k[0] != "constant" for k in casts._casts)
        ones = 0 if casts is None else len(casts._casts) - hits
    loss, _ = AlphaFoldLoss(LossConfig.mlperf())(out, last_iteration(batch), True)
    with _Fills() as fills:
        loss.backward()
    if cached:  # the recycling iterations shared one copy of each weight (and bias)
        assert no_grad_callers and hits == 2 * len(no_grad_callers)
        # the bias gradients' ones vectors: one per row count (a handful), not one per
        # biased Linear with gradients; none filled in backward
        assert 0 < ones <= 8 and 4 * ones < len(grad_calls) and fills.count == 0
    else:
        assert fills.count > 0
    return loss.detach(), [p.grad for p in model.parameters()], casts


class _Fills(TorchDispatchMode):
    """Counts the ones vectors the backward fills for bias gradients."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += func.overloadpacket.__name__ == "new_ones"
        return func(*args, **(kwargs or {}))


def test_cached_weight_casts_change_no_bit_and_lose_no_gradient():
    l0, g0, _ = _recycled_loss_and_grads(cached=False)
    l1, g1, casts = _recycled_loss_and_grads(cached=True)
    assert torch.equal(l0, l1)
    assert len(g0) == len(g1)
    for a, b in zip(g0, g1, strict=True):
        assert (a is None) == (b is None) and (a is None or torch.equal(a, b))
    assert sum(1 for g in g1 if g is not None) > 0
    assert casts._casts is None  # the scope closed with the forward


def test_shared_ones_under_a_recomputed_outer_product():
    """`recompute_outer_product` (h100) recomputes the outer product mean's Linears in
    backward, outside the forward's scope: the recomputation must save what the forward
    saved (the shared ones are not a saved tensor), and the gradients keep their bits."""
    from scalefold.kernels import recompute_outer_product_mean
    from scalefold.kernels._autocast import WeightCasts

    grads = []
    for cached in (False, True):
        torch.manual_seed(0)
        model = AlphaFold(AlphaFoldConfig.tiny()).eval()
        casts = WeightCasts() if cached else None
        swap_linears(model, casts)
        recompute_outer_product_mean(model)
        batch = synthetic_batch(None, n_res=12, n_clust=4, n_extra=6, n_templ=1,
                                num_iterations=1, device="cpu")
        scope = casts.scope() if cached else contextlib.nullcontext()
        with torch.autocast("cpu", dtype=torch.bfloat16), scope:
            out = model(batch)
        loss, _ = AlphaFoldLoss(LossConfig.mlperf())(out, last_iteration(batch), True)
        loss.backward()
        grads.append([p.grad for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        assert (a is None) == (b is None) and (a is None or torch.equal(a, b))
