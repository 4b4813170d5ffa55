"""The outer product mean's residual update in its projection kernel's epilogue
(`scalefold.kernels.opm.EpilogueOuterProductMean`): against the plain module's
r + forward, with the LayerNorm-projection mixin behind it, compiled, with gradients (the
plain path), and its preconditions."""

from __future__ import annotations

import copy

import pytest
import torch

from scalefold.kernels.ln_linear import swap_norm_projections
from scalefold.kernels.opm import (
    EpilogueOuterProductMean,
    ProjectedOuterProductMean,
    swap_outer_product_epilogue,
    swap_outer_product_mean,
)
from scalefold.model.pair import OuterProductMean
from scalefold.train.config import SpeedConfig


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-30)).item()


def _modules(device, c_m=24, c_z=20, c=16, norm_fused=False):
    g = torch.Generator().manual_seed(3)
    plain = OuterProductMean(c_m, c_z, c, 1e-3)
    for p in plain.parameters():  # the "final" init is zero: randomise all
        torch.nn.init.normal_(p, std=0.3, generator=g)
    plain = plain.to(device)
    fused = swap_outer_product_mean(copy.deepcopy(plain))
    if norm_fused:
        swap_norm_projections(fused)
    swap_outer_product_epilogue(fused)
    return plain, fused


def _inputs(device, lead=(1,), s=5, n=70, c_m=24, c_z=20, seed=4):
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(*lead, s, n, c_m, generator=g).to(device)
    mask = (torch.rand(*lead, s, n, generator=g) > 0.3).float().to(device)
    r = torch.randn(*lead, n, n, c_z, generator=g).to(device)
    return m, mask, r


@pytest.mark.parametrize("lead,s,n", [((1,), 5, 70), ((2,), 3, 19)])
def test_epilogue_is_the_plain_residual_update(kern, device, monkeypatch, lead, s, n):
    """r + outer / (eps + count) from the kernel's epilogue equals the plain module's
    r + forward (fp32: within rounding; bf16 on the GPU: within its rounding, the
    kernel rounding once where the plain path rounds the projection first), a j block
    past N, c_z not a power of two, masked rows, a leading batch."""
    import scalefold.kernels.opm as opm

    if device.type == "cuda":
        monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    launches = []
    launch = opm._launch_forward
    monkeypatch.setattr(opm, "_launch_forward",
                        lambda *a: launches.append(len(a)) or launch(*a))
    plain, fused = _modules(device)
    assert isinstance(fused, EpilogueOuterProductMean)
    m, mask, r = _inputs(device, lead, s, n)
    with torch.no_grad():
        want = plain.added_to(r, m, mask)
        got = fused.added_to(r, m, mask)
        assert launches == [6]  # one launch, with the epilogue's two tensors
        assert got.shape == want.shape and got.dtype == torch.float32
        assert rel(got, want) < 1e-6
        assert torch.equal(fused(m, mask), ProjectedOuterProductMean.forward(fused, m, mask))
        if device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                want = plain.added_to(r, m, mask)
                got = fused.added_to(r, m, mask)
            assert got.dtype == want.dtype == torch.float32
            assert rel(got - r, want - r) < 1e-2


def test_epilogue_behind_the_norm_projection_mixin_and_compiled(kern, device, monkeypatch):
    """In front of the LayerNorm-projection mixin (the evaluation's order), and under
    torch.compile with dynamic shapes (the evaluation's compiled glue: the launch a graph
    break), the same update at two lengths."""
    if device.type == "cuda":
        monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    plain, fused = _modules(device, norm_fused=True)
    names = [k.__name__ for k in type(fused).__mro__]
    assert names.index("EpilogueOuterProductMean") < names.index("NormFusedOuterProductMean")
    torch._dynamo.reset()
    fused.compile(dynamic=True)
    with torch.no_grad():
        for n in (33, 47):
            m, mask, r = _inputs(device, n=n, seed=n)
            assert rel(fused.added_to(r, m, mask), plain.added_to(r, m, mask)) < 1e-6
    torch._dynamo.reset()


def test_with_gradients_the_plain_update(kern, device, monkeypatch):
    """With gradients the mixin stands aside: r + the projected module's forward, and
    gradients flow as through it."""
    if device.type == "cuda":
        monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    plain, fused = _modules(device)
    m, mask, r = _inputs(device, n=21)
    m.requires_grad_()
    got = fused.added_to(r, m, mask)
    (dm_got,) = torch.autograd.grad(got.square().sum(), m)
    want = plain.added_to(r, m, mask)
    (dm_want,) = torch.autograd.grad(want.square().sum(), m)
    assert rel(got, want) < 1e-5 and rel(dm_got, dm_want) < 1e-5


def test_epilogue_needs_the_projection_kernel():
    with pytest.raises(ValueError, match="swap_outer_product_mean"):
        swap_outer_product_epilogue(OuterProductMean(8, 8, 4, 1e-3))
    with pytest.raises(ValueError, match="opm_projection_kernel"):
        SpeedConfig(opm_residual_epilogue=True)


def test_opm_in_triton_interpreter():
    """CPU: the kernel tests above rerun in a process under TRITON_INTERPRET=1."""
    from tests.kernels.conftest import rerun_in_interpreter

    rerun_in_interpreter(__file__, "epilogue_is or behind_the or with_gradients")
