"""The matvec-bias-gradient Linear: the same parameters, loss and gradients as `Linear`."""

from __future__ import annotations

import pytest
import torch

from scalefold.data.selection import last_iteration
from scalefold.kernels import MatvecBiasGradLinear, swap_linears
from scalefold.losses import AlphaFoldLoss, LossConfig
from scalefold.model import AlphaFold, AlphaFoldConfig
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
