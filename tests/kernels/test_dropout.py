"""The fused residual dropout: the same masks and the same bits as the plain module.

Kernel tests (the `kern` fixture) run natively on a GPU and, on a CPU, in the
TRITON_INTERPRET=1 subprocess of `test_dropout_kernels_in_triton_interpreter`. Each one
compares with the plain module and with `_eager_cuda`, eager CUDA's rounding steps as
explicit float32 ops. CPU eager divides by 1 - p truly where CUDA multiplies by the
float32 reciprocal; for bf16 and fp16 inputs and the p used here both round to the same
value for every input (`test_cpu_division_rounds_as_cuda_reciprocal`), so the plain
module on a CPU is a bitwise reference too.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scalefold.kernels import FusedResidualDropout, swap_residual_dropout
from scalefold.model import AlphaFold, AlphaFoldConfig
from scalefold.model.dropout import SharedDropout, dropout_columnwise, dropout_rowwise
from scalefold.utils.synthetic import synthetic_batch
from tests.kernels.conftest import rerun_in_interpreter

P = 0.25
BF16, F16, F32 = torch.bfloat16, torch.float16, torch.float32


def _inv(p: float = P) -> torch.Tensor:
    return torch.tensor(np.float32(1.0) / np.float32(1.0 - p))  # float32, 0-dim


def _eager_cuda(r, x, keep, g):
    """(out, dx, dr) as eager CUDA rounds `r + x * keep / (1 - P)` and its backward."""
    inv = _inv()
    y = ((x * keep).float() * inv).to(x.dtype)
    out = (r.float() + y.float()).to(torch.promote_types(r.dtype, x.dtype))
    gy = g.to(x.dtype)  # autograd casts the add's gradient to y's dtype
    dx = (gy.float() * inv).to(x.dtype) * keep
    return out, dx, g.to(r.dtype)


def _keep(mod: SharedDropout, x: torch.Tensor, seed: int) -> torch.Tensor:
    """The mask the module draws for x after manual_seed(seed)."""
    torch.manual_seed(seed)
    shape = list(x.shape)
    shape[mod.shared_dim] = 1
    return torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(1.0 - mod.p)


def _run(mod, r, x, g, seed):
    r, x = r.detach().requires_grad_(), x.detach().requires_grad_()
    torch.manual_seed(seed)
    out = mod.residual(r, x)
    dr, dx = torch.autograd.grad(out, (r, x), g)
    return out.detach(), dx, dr


def _inputs(shape, x_dtype, r_dtype, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=gen) * 2).to(device, x_dtype)
    r = (torch.randn(shape, generator=gen) * 4).to(device, r_dtype)
    g = torch.randn(shape, generator=gen).to(device, torch.promote_types(r_dtype, x_dtype))
    return r, x, g


def _fused(make, p=P):
    mod = make(p)
    swap_residual_dropout(mod)
    assert type(mod) is FusedResidualDropout
    return mod


def test_cpu_division_rounds_as_cuda_reciprocal():
    """Every finite bf16 and fp16 value divided by 1 - p on the CPU (a true division in
    float32) rounds as CUDA's multiplication by the float32 reciprocal does."""
    bits = torch.arange(-(2 ** 15), 2 ** 15, dtype=torch.int32).to(torch.int16)
    for dtype in (BF16, F16):
        v = bits.view(dtype)
        v = v[torch.isfinite(v)]
        for p in (P, 0.15):
            assert torch.equal(v / (1.0 - p), (v.float() * _inv(p)).to(dtype))


@pytest.mark.parametrize("make", [dropout_rowwise, dropout_columnwise])
@pytest.mark.parametrize("shape", [(5, 7, 6), (2, 2, 7, 11, 40)], ids=["3d", "lead2_c40"])
@pytest.mark.parametrize("x_dtype,r_dtype", [(BF16, BF16), (BF16, F32), (F16, F16)],
                         ids=["bf16", "bf16_r_fp32", "fp16"])
def test_kernel_bitwise_as_plain_module(kern, device, make, shape, x_dtype, r_dtype):
    """Output, dx and dr bit for bit: leading dims, a channel count that is no power of
    two, several programs; the add's gradient in float32 when r is float32."""
    plain, fused = make(P), _fused(make)
    r, x, g = _inputs(shape, x_dtype, r_dtype, device)
    got = _run(fused, r, x, g, seed=3)
    want = _run(plain, r, x, g, seed=3)
    formula = _eager_cuda(r, x, _keep(plain, x, seed=3), g)
    assert got[0].dtype == torch.promote_types(r_dtype, x_dtype)
    assert got[1].dtype == x_dtype and got[2].dtype == r_dtype
    for a, b, c in zip(got, want, formula, strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)
    # the same masks: where x was dropped, r passes unchanged
    dropped = got[1] == 0
    assert dropped.any() and (~dropped).any()
    assert torch.equal(got[0][dropped], r[dropped].to(got[0].dtype))
    # the test can tell: rounding once (x · keep · inv added in float32) differs
    keep = _keep(plain, x, seed=3)
    once = (r.float() + x.float() * keep.float() * _inv()).to(got[0].dtype)
    assert not torch.equal(once, got[0])


@pytest.mark.parametrize("x_dtype,r_dtype,broadcast_r", [(F32, F32, False), (BF16, BF16, True),
                                                         (BF16, F16, False)],
                         ids=["fp32", "bf16_broadcast_r", "bf16_r_fp16"])
def test_fallbacks_are_the_plain_math(device, x_dtype, r_dtype, broadcast_r):
    """float32 x, a broadcast r, an r dtype the kernel does not take: the plain module's
    own expression, bit for bit (and the same masks)."""
    shape = (2, 5, 7, 6)
    plain, fused = dropout_rowwise(P), _fused(dropout_rowwise)
    r, x, g = _inputs(shape, x_dtype, r_dtype, device)
    if broadcast_r:
        r = r[0]  # [5, 7, 6] against x's [2, 5, 7, 6]
    for a, b in zip(_run(fused, r, x, g, 4), _run(plain, r, x, g, 4), strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b)


@pytest.mark.parametrize("dtype", [F32, BF16])
def test_eval_mode_and_p0_are_the_plain_sum(device, dtype):
    r, x, _ = _inputs((2, 5, 7, 6), dtype, dtype, device)
    fused = _fused(dropout_rowwise).eval()
    assert torch.equal(fused.residual(r, x), r + x)
    zero = _fused(dropout_columnwise, p=0.0)
    assert torch.equal(zero.residual(r, x), r + x)
    assert torch.equal(zero.residual(r, x), dropout_columnwise(0.0).residual(r, x))


def _model_outputs(model, batch, seed, autocast):
    torch.manual_seed(seed)
    dev = next(model.parameters()).device
    with torch.no_grad(), torch.autocast(dev.type, dtype=BF16, enabled=autocast):
        out = model(batch)
    return [out[k] for k in ("msa", "pair", "single", "final_atom_positions")]


def _model_and_batch(device):
    torch.manual_seed(0)
    model = AlphaFold(AlphaFoldConfig.tiny()).to(device).train()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # the residual updates' "final" inits are zero: randomise all
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    batch = synthetic_batch(None, n_res=12, n_clust=4, n_extra=6, n_templ=1, num_iterations=1)
    return model, {k: v.to(device) for k, v in batch.items()}


def test_swap_on_the_model_keeps_state_dict_and_training_forward(device):
    """float32: every swapped module takes the plain math, so the training forward is
    the same bits."""
    model, batch = _model_and_batch(device)
    names = list(model.state_dict())
    n = sum(type(m) is SharedDropout for m in model.modules())
    assert n > 0
    ref = _model_outputs(model, batch, 5, autocast=False)
    swap_residual_dropout(model)
    assert sum(type(m) is FusedResidualDropout for m in model.modules()) == n
    assert list(model.state_dict()) == names
    for a, b in zip(_model_outputs(model, batch, 5, autocast=False), ref, strict=True):
        assert torch.equal(a, b)


def test_kernel_on_the_model_under_bf16_autocast(kern, device, monkeypatch):
    """bf16 autocast: every residual update goes through the kernel, and the training
    forward is the plain model's, bit for bit."""
    import scalefold.kernels.dropout as fused_dropout

    calls = []
    apply = fused_dropout._ResidualDropoutFn.apply
    monkeypatch.setattr(fused_dropout._ResidualDropoutFn, "apply",
                        lambda *a: calls.append(a[1].dtype) or apply(*a))
    model, batch = _model_and_batch(device)
    ref = _model_outputs(model, batch, 5, autocast=True)
    swap_residual_dropout(model)
    got = _model_outputs(model, batch, 5, autocast=True)
    assert calls and set(calls) == {BF16}
    for a, b in zip(got, ref, strict=True):
        assert torch.isfinite(a).all() and torch.equal(a, b)


def test_dropout_kernels_in_triton_interpreter():
    """CPU: rerun this module's kernel tests in a fresh process under TRITON_INTERPRET=1."""
    rerun_in_interpreter(__file__, "kernel_bitwise or kernel_on_the_model")
