"""Self-attention's stacked projections: the same parameters, outputs and gradients as
the four separate Linears."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from scalefold.data.selection import last_iteration
from scalefold.kernels import (
    StackedBiasTriangleAttention,
    StackedOuterProductProjections,
    StackedProjectionAttention,
    swap_attention_projections,
    swap_outer_product_projections,
    swap_triangle_bias_projections,
)
from scalefold.kernels._autocast import WeightCasts
from scalefold.losses import AlphaFoldLoss, LossConfig
from scalefold.model import AlphaFold, AlphaFoldConfig
from scalefold.model.attention import Attention
from scalefold.model.pair import OuterProductMean, TriangleAttention
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


# Triangle attention's bias projection in the stacked matmul (`attention_stacked_triangle_bias`)


def _triangle(starting: bool, c_z: int = 12, c_hidden: int = 5) -> TriangleAttention:
    torch.manual_seed(2)
    m = TriangleAttention(c_z, c_hidden, 4, 1e9, starting=starting)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.3)
    return m


def _stacked_triangle(m: TriangleAttention, casts: WeightCasts | None = None):
    swap_attention_projections(m, casts)
    swap_triangle_bias_projections(m)
    return m


@pytest.mark.parametrize("starting", [True, False])
def test_triangle_bias_stacked_same_output_and_gradients_fp32(starting):
    plain = _triangle(starting)
    stacked = _stacked_triangle(_triangle(starting))
    assert isinstance(stacked, StackedBiasTriangleAttention)
    assert list(stacked.state_dict()) == list(plain.state_dict())
    z = torch.randn(2, 9, 9, 12)
    mask = (torch.rand(2, 9, 9) > 0.2).float()
    outs, grads = [], []
    for m in (plain, stacked):
        zi = z.clone().requires_grad_()
        y = m(zi, mask)
        y.square().sum().backward()
        outs.append(y)
        grads.append(torch.cat([zi.grad.flatten()] + [p.grad.flatten() for p in m.parameters()]))
    assert rel(outs[1], outs[0]) < 1e-6
    assert rel(grads[1], grads[0]) < 1e-5


class _Ops(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def _matmuls(m, z, mask, grad: bool) -> int:
    zi = z.clone().requires_grad_(grad)
    with _Ops() as ops:
        y = m(zi, mask)
        if grad:
            y.sum().backward()
    return sum(op in ("mm", "addmm", "bmm", "baddbmm") for op in ops.ops)


def test_triangle_bias_stacked_is_one_gemm_less_each_way():
    """Forward: the bias's GEMM; backward: its input- and weight-gradient GEMMs."""
    z, mask = torch.randn(1, 8, 8, 12), torch.ones(1, 8, 8)
    base = swap_attention_projections(_triangle(True))
    stacked = _stacked_triangle(_triangle(True))
    assert _matmuls(stacked, z, mask, False) == _matmuls(base, z, mask, False) - 1
    assert _matmuls(stacked, z, mask, True) == _matmuls(base, z, mask, True) - 3


def test_triangle_bias_stacked_keeps_the_projections_aligned(monkeypatch):
    """The bias's columns are padded to 16: q, k, v and the gate start, and their rows
    stride, at multiples of 16 elements (cuBLAS and the kernels' vector loads) where
    H·c is one (the model's 4 × 32 and the templates' 4 × 16)."""
    stacked = _stacked_triangle(_triangle(True, c_z=16, c_hidden=8))
    seen = []
    real = type(stacked.mha).attend
    monkeypatch.setattr(type(stacked.mha), "attend",
                        lambda self, q, k, v, g, *a, **kw: seen.append((q, k, v, g))
                        or real(self, q, k, v, g, *a, **kw))
    with torch.no_grad():
        stacked(torch.randn(1, 8, 8, 16), torch.ones(1, 8, 8))
    (q, k, v, g), = seen
    for t in (q, k, v, g):
        assert t.stride(-2) % 16 == 0 and t.storage_offset() % 16 == 0


def test_triangle_bias_stacked_weight_made_once_per_scope_without_gradients(monkeypatch):
    import scalefold.kernels.projections as proj

    casts = WeightCasts()
    m = _stacked_triangle(_triangle(True), casts)
    made = []
    real = proj.stack_cast
    monkeypatch.setattr(proj, "stack_cast", lambda ps, dt: made.append(len(ps)) or real(ps, dt))
    z, mask = torch.randn(1, 6, 6, 12), torch.ones(1, 6, 6)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16), casts.scope():
        y0, y1 = m(z, mask), m(z, mask)
    assert torch.equal(y0, y1) and made == [6]  # bias, pad, q, k, v, g: once
    with torch.autocast("cpu", dtype=torch.bfloat16), casts.scope():
        m(z, mask)
        m(z, mask)
    assert made == [6, 6, 6]  # with gradients each call stacks its own


def test_triangle_bias_left_alone_without_stacked_projections():
    plain = _triangle(True)
    m = swap_triangle_bias_projections(_triangle(True))  # mha not stacked: plain project
    z, mask = torch.randn(1, 6, 6, 12), torch.ones(1, 6, 6)
    assert torch.equal(m(z, mask), plain(z, mask))


@pytest.mark.parametrize("bf16", [False, True])
def test_whole_model_with_the_triangle_bias_stacked(bf16):
    model = _same_model_numbers([swap_attention_projections],
                                [swap_attention_projections, swap_triangle_bias_projections],
                                bf16)
    assert sum(isinstance(m, StackedBiasTriangleAttention) for m in model.modules()) == 8


# The outer product mean's two input projections as one matmul (`opm_stacked_projections`)


def _opm() -> OuterProductMean:
    torch.manual_seed(3)
    m = OuterProductMean(12, 10, 6, 1e-3)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.3)
    return m


@pytest.mark.parametrize("recompute", [False, True])
def test_opm_stacked_same_output_and_gradients_fp32(recompute):
    from scalefold.kernels import recompute_outer_product_mean, swap_outer_product_mean

    plain = _opm()
    stacked = _opm()
    swap_outer_product_mean(stacked)
    if recompute:
        recompute_outer_product_mean(stacked)
    swap_outer_product_projections(stacked)
    assert isinstance(stacked, StackedOuterProductProjections)
    assert list(stacked.state_dict()) == list(plain.state_dict())
    m = torch.randn(2, 5, 7, 12)
    mask = (torch.rand(2, 5, 7) > 0.2).float()
    outs, grads = [], []
    for mod in (plain, stacked):
        mi = m.clone().requires_grad_()
        y = mod(mi, mask)
        y.square().sum().backward()
        outs.append(y)
        grads.append(torch.cat([mi.grad.flatten()] + [p.grad.flatten() for p in mod.parameters()]))
    assert rel(outs[1], outs[0]) < 1e-6
    assert rel(grads[1], grads[0]) < 1e-5


def test_opm_stacked_is_one_gemm_less_each_way():
    m, mask = torch.randn(1, 5, 6, 12), torch.ones(1, 5, 6)
    base, stacked = _opm(), swap_outer_product_projections(_opm())
    assert _matmuls(stacked, m, mask, False) == _matmuls(base, m, mask, False) - 1
    # backward: the input's gradient and the weights' gradients, one GEMM each
    assert _matmuls(stacked, m, mask, True) == _matmuls(base, m, mask, True) - 3


def test_opm_stacked_weight_made_once_per_scope_without_gradients(monkeypatch):
    import scalefold.kernels.projections as proj

    casts = WeightCasts()
    mod = swap_outer_product_projections(_opm(), casts)
    made = []
    real = proj.stack_cast
    monkeypatch.setattr(proj, "stack_cast", lambda ps, dt: made.append(dt) or real(ps, dt))
    m, mask = torch.randn(1, 5, 6, 12), torch.ones(1, 5, 6)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16), casts.scope():
        y0, y1 = mod(m, mask), mod(m, mask)
    assert torch.equal(y0, y1) and len(made) == 2  # weight and bias, once
    with torch.autocast("cpu", dtype=torch.bfloat16), casts.scope():
        mod(m, mask)
    assert len(made) == 4  # with gradients each call stacks its own


def test_outer_product_kernel_swap_refuses_to_follow_the_stacked_mixin():
    from scalefold.kernels import swap_outer_product_mean

    mod = swap_outer_product_projections(_opm())
    with pytest.raises(ValueError, match="StackedOuterProductProjections"):
        swap_outer_product_mean(mod)


@pytest.mark.parametrize("bf16", [False, True])
def test_whole_model_with_the_opm_projections_stacked(bf16):
    model = _same_model_numbers([], [swap_outer_product_projections], bf16)
    assert sum(isinstance(m, StackedOuterProductProjections) for m in model.modules()) == 3


def test_opm_stacked_compiles_without_breaks():
    """Under compile_glue (inductor on a GPU; aot_eager here) the stacked projections trace
    into one graph, with or without gradients, and give the eager module's numbers."""
    from scalefold.kernels import compile_glue

    torch._dynamo.reset()
    eager = swap_outer_product_projections(_opm(), WeightCasts())
    compiled = swap_outer_product_projections(_opm(), WeightCasts())
    compile_glue(compiled, backend="aot_eager", fullgraph=True)
    m, mask = torch.randn(1, 5, 6, 12), torch.ones(1, 5, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.no_grad(), eager.weight_casts.scope(), compiled.weight_casts.scope():
            assert torch.equal(compiled(m, mask), eager(m, mask))
        mi, mc = m.clone().requires_grad_(), m.clone().requires_grad_()
        eager(mi, mask).float().square().sum().backward()
        compiled(mc, mask).float().square().sum().backward()
    assert rel(mc.grad, mi.grad) < 1e-2
    torch._dynamo.reset()
