"""Channels-first triangle multiplication: the plain module's output and gradients."""

from __future__ import annotations

import pytest
import torch

from scalefold.kernels.trimul import (
    ChannelFirstTriangleMultiplication,
    swap_triangle_multiplication,
)
from scalefold.model import AlphaFold, AlphaFoldConfig
from scalefold.model.pair import TriangleMultiplication

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / (b.norm() + 1e-2))


def _run(swap: bool, outgoing: bool, device: str, bf16: bool, lead=(1,)):
    g = torch.Generator().manual_seed(7)
    mod = TriangleMultiplication(16, 8, outgoing)
    for p in mod.parameters():  # "final"/"gating" inits are constant: randomise all
        torch.nn.init.normal_(p, std=0.3, generator=g)
    mod = mod.to(device)
    if swap:
        swap_triangle_multiplication(mod)
        assert type(mod) is ChannelFirstTriangleMultiplication
    z = torch.randn(*lead, 11, 11, 16, generator=g).to(device).requires_grad_()
    mask = (torch.rand(*lead, 11, 11, generator=g) > 0.2).float().to(device)
    with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
        out = mod(z, mask)
    leaves = [z, *mod.parameters()]
    grads = torch.autograd.grad(out, leaves, torch.randn(out.shape, generator=g).to(device))
    return [out, *grads]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("outgoing", [True, False])
@pytest.mark.parametrize("lead", [(1,), (1, 3)])  # Evoformer pair; template stack [*, T]
def test_channel_first_matches_plain_fp32(device, outgoing, lead):
    """Output and every gradient (the four stacked projections' biases among them)."""
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    ref = _run(False, outgoing, device, False, lead)
    got = _run(True, outgoing, device, False, lead)
    errs = [rel(a, b) for a, b in zip(got, ref)]
    assert len(got) == len(ref) and max(errs) < 1e-5, errs


@pytest.mark.parametrize("device", DEVICES)
def test_channel_first_matches_plain_bf16(device):
    ref = _run(False, True, device, True)
    got = _run(True, True, device, True)
    assert got[0].dtype == ref[0].dtype
    assert all(g.dtype == r.dtype for g, r in zip(got, ref))  # fp32 master-weight grads
    errs = [rel(a, b) for a, b in zip(got, ref)]
    assert max(errs) < 3e-2, errs


def test_swap_keeps_parameters_and_state_dict():
    model = AlphaFold(AlphaFoldConfig.tiny())
    names = list(model.state_dict())
    params = [id(p) for p in model.parameters()]
    swap_triangle_multiplication(model)
    assert list(model.state_dict()) == names
    assert [id(p) for p in model.parameters()] == params
    n = sum(isinstance(m, ChannelFirstTriangleMultiplication) for m in model.modules())
    assert n == sum(isinstance(m, TriangleMultiplication) for m in model.modules()) > 0
