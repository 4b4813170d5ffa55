"""Self-attention's stacked projections: the same parameters, outputs and gradients as
the four separate Linears."""

from __future__ import annotations

import pytest
import torch

from scalefold.data.selection import last_iteration
from scalefold.kernels import StackedProjectionAttention, swap_attention_projections
from scalefold.kernels._autocast import WeightCasts
from scalefold.losses import AlphaFoldLoss, LossConfig
from scalefold.model import AlphaFold, AlphaFoldConfig
from scalefold.model.attention import Attention
from scalefold.utils.synthetic import synthetic_batch


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def _module(gating: bool) -> Attention:
    torch.manual_seed(1)
    m = Attention(12, 12, 5, 3, gating=gating)
    with torch.no_grad():  # the "final" init zeroes linear_o: give it values
        for p in m.parameters():
            p.normal_(0, 0.3)
    return m


@pytest.mark.parametrize("gating", [True, False])
@pytest.mark.parametrize("columns", [False, True])
def test_same_output_and_gradients_fp32(gating, columns):
    plain = _module(gating)
    stacked = _module(gating)
    swap_attention_projections(stacked)
    assert isinstance(stacked, StackedProjectionAttention)
    assert list(stacked.state_dict()) == list(plain.state_dict())
    x = torch.randn(2, 9, 7, 12)
    # rows: attention along the 7 of [2, 9, 7]; columns: along the 9, for every column
    bias = torch.randn(2, 9, 1, 1, 7) if not columns else torch.randn(2, 7, 1, 1, 9)
    outs, grads = [], []
    for m in (plain, stacked):
        xi = x.clone().requires_grad_()
        y = m(xi, xi, [bias], columns=columns)
        y.square().sum().backward()
        outs.append(y)
        grads.append(torch.cat([xi.grad.flatten()] + [p.grad.flatten() for p in m.parameters()]))
    assert rel(outs[1], outs[0]) < 1e-6
    assert rel(grads[1], grads[0]) < 1e-5


def test_cross_attention_keeps_the_separate_projections():
    """Template pointwise attention (queries from z, keys from the templates)."""
    plain = _module(True)
    stacked = _module(True)
    swap_attention_projections(stacked)
    q_x, kv_x = torch.randn(6, 1, 12), torch.randn(6, 4, 12)
    assert torch.equal(stacked(q_x, kv_x, []), plain(q_x, kv_x, []))


def test_stacked_weight_made_once_per_scope_without_gradients(monkeypatch):
    import scalefold.kernels.projections as proj

    m = _module(True)
    casts = WeightCasts()
    swap_attention_projections(m, casts)
    made = []
    real = proj.stack_cast
    monkeypatch.setattr(proj, "stack_cast", lambda ps, dt: made.append(dt) or real(ps, dt))
    x = torch.randn(3, 5, 12)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16), casts.scope():
        y0 = m(x, x, [])
        y1 = m(x, x, [])
    assert torch.equal(y0, y1) and made == [torch.bfloat16]  # one copy, handed out twice
    with torch.autocast("cpu", dtype=torch.bfloat16), casts.scope():
        m(x, x, [])
        m(x, x, [])
    assert len(made) == 3  # with gradients each call stacks its own
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        m(x, x, [])  # no scope open: stacked per call
    assert len(made) == 4


def test_gate_bias_padded_once_per_scope_without_gradients(monkeypatch):
    """Without gradients the stacked projection's gate bias is handed out padded with the
    zeros of q, k, v, so no call pads it again; the output is the bits of a call that
    pads it itself."""
    import scalefold.kernels.projections as proj

    m = _module(True)
    casts = WeightCasts()
    swap_attention_projections(m, casts)
    x = torch.randn(3, 5, 12)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        want = m(x, x, [])  # no scope open: stacked and padded on the call
    import scalefold.kernels.linear as lin

    pads = []
    real_pad = lin.pad_bias
    spy = lambda *a: pads.append(1) or real_pad(*a)  # noqa: E731
    monkeypatch.setattr(lin, "pad_bias", spy)
    monkeypatch.setattr(proj, "pad_bias", spy)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16), casts.scope():
        got = [m(x, x, []) for _ in range(3)]
    assert len(pads) == 1
    assert all(torch.equal(g, want) for g in got)


def _loss_and_grads(swaps, bf16: bool):
    """The tiny model's loss and gradients (two recycling iterations) after `swaps`
    (functions applied to the model), which must keep its Parameters and names."""
    torch.manual_seed(0)
    model = AlphaFold(AlphaFoldConfig.tiny()).eval()
    names = list(model.state_dict())
    params = [id(p) for p in model.parameters()]
    for swap_fn in swaps:
        swap_fn(model)
    assert [id(p) for p in model.parameters()] == params
    assert list(model.state_dict()) == names
    batch = synthetic_batch(None, n_res=14, n_clust=5, n_extra=7, n_templ=2,
                            num_iterations=2)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = model(batch)
    loss, _ = AlphaFoldLoss(LossConfig.mlperf())(out, last_iteration(batch), True)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is None or g.dtype == torch.float32 for g in grads)
    return loss.detach(), torch.cat([g.flatten() for g in grads if g is not None]), model


def _same_model_numbers(base, swapped, bf16: bool):
    l0, g0, _ = _loss_and_grads(base, bf16)
    l1, g1, model = _loss_and_grads(swapped, bf16)
    assert rel(l1, l0) < (1e-3 if bf16 else 1e-6)
    assert rel(g1, g0) < (2e-2 if bf16 else 1e-5)
    return model


@pytest.mark.parametrize("bf16", [False, True])
def test_whole_model_same_loss_and_gradients(bf16):
    """The tiny model with recycling, every kind of attention swapped (bf16: dx rounds
    once instead of four times; the rest is the same arithmetic)."""
    _same_model_numbers([], [swap_attention_projections], bf16)
