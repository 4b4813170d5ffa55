"""The attention's gate in the Triton kernel's epilogue (`attention_gate_epilogue`): the
kernel against the core then the gate, the module against the plain one, the plain path
with gradients, the swap through `apply_speedups`."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from scalefold.kernels import (
    GateEpilogueAttention,
    apply_kernels,
    apply_speedups,
    swap_attention_projections,
    swap_gate_epilogue,
)
from scalefold.model import AlphaFold, AlphaFoldConfig
from scalefold.model.attention import Attention
from scalefold.train.config import PRESETS


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-30)).item()


def _module(seed: int, stacked: bool) -> Attention:
    torch.manual_seed(seed)
    m = Attention(24, 24, 8, 3, gating=True)
    with torch.no_grad():  # the "final" init zeroes linear_o: give it values
        for p in m.parameters():
            p.normal_(0, 0.3)
    return swap_attention_projections(m) if stacked else m


def _inputs(device, columns: bool):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 19, 33, 24, generator=g).to(device)  # [*, S, N, c] (rows: along 33)
    lk, lb = (19, 33) if columns else (33, 19)
    mask = (torch.rand(2, lb, 1, 1, lk, generator=g) > 0.2).float().to(device)
    bias = torch.randn(1, 1, 3, lk, lk, generator=g).to(device)
    return x, [1e9 * (mask - 1.0), bias]


@pytest.mark.parametrize("columns", [False, True], ids=["rows", "columns"])
@pytest.mark.parametrize("stacked", [False, True], ids=["separate", "stacked"])
def test_module_without_gradients_gates_in_the_epilogue(kern, device, columns, stacked,
                                                        monkeypatch):
    """fp32: the plain module's output to rounding (rows and columns, the gate a view of
    the stacked projection or a tensor of its own), through the gated kernel."""
    import scalefold.kernels.cores as cores

    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    calls = []
    gated = cores.gated_flash_attention
    monkeypatch.setattr(cores, "gated_flash_attention",
                        lambda *a, **kw: calls.append(1) or gated(*a, **kw))
    plain = apply_kernels(_module(0, stacked), attention="triton").to(device)
    fast = swap_gate_epilogue(copy.deepcopy(plain))
    assert isinstance(fast, GateEpilogueAttention)
    x, biases = _inputs(device, columns)
    with torch.no_grad():
        want = plain(x, x, biases, columns=columns)
        got = fast(x, x, biases, columns=columns)
    assert got.shape == want.shape and rel(got, want) < 1e-6
    assert len(calls) == 1
    if device.type == "cuda":  # bf16 within its rounding (the interpreter's bf16 is wrong)
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            want = plain(x, x, biases, columns=columns)
            got = fast(x, x, biases, columns=columns)
        assert rel(got, want) < 1e-2


def test_with_gradients_or_short_attention_the_plain_path(kern, device, monkeypatch):
    """With gradients nothing changes (bits and gradients); where the kernel cannot take
    the call (fewer than 16 keys: the PyTorch math) the module gates as before."""
    import scalefold.kernels.cores as cores

    plain = apply_kernels(_module(1, True), attention="triton").to(device)
    fast = swap_gate_epilogue(copy.deepcopy(plain))
    x, biases = _inputs(device, False)
    xs = [x.clone().requires_grad_() for _ in range(2)]
    monkeypatch.setattr(cores, "gated_flash_attention",
                        lambda *a, **kw: pytest.fail("gated kernel with gradients"))
    want, got = plain(xs[0], xs[0], biases), fast(xs[1], xs[1], biases)
    assert torch.equal(got, want)
    want.square().sum().backward()
    got.square().sum().backward()
    assert torch.equal(xs[0].grad, xs[1].grad)
    monkeypatch.undo()
    short = x[:, :, :9]  # 9 keys
    sb = [biases[0][..., :9], biases[1][..., :9, :9]]  # the mask's keys, the bias's tile
    with torch.no_grad():
        assert rel(fast(short, short, sb), plain(short, short, sb)) < 1e-6


def test_gated_kernel_refuses_gradients(kern, device):
    from scalefold.kernels.attention import gated_flash_attention

    q = torch.randn(1, 2, 32, 8, device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match="no backward"):
        gated_flash_attention(q, q, q, [], torch.zeros_like(q))


def test_apply_speedups_puts_the_mixin_on_every_attention():
    """`attention_gate_epilogue` in apply_speedups: every Attention of the model gets the
    mixin, the state dict kept; the field needs the Triton core."""
    model = AlphaFold(AlphaFoldConfig.tiny())
    keys = list(model.state_dict())
    speed = dataclasses.replace(PRESETS["h200"].speed, attention_gate_epilogue=True,
                                compile_glue=False, compile_structure_module=False,
                                cached_weight_casts=False)
    apply_speedups(model, speed, "bf16")
    assert list(model.state_dict()) == keys
    attns = [m for m in model.modules() if isinstance(m, Attention)]
    assert attns and all(isinstance(m, GateEpilogueAttention) for m in attns)
    with pytest.raises(ValueError, match="attention='triton'"):
        dataclasses.replace(speed, attention="eager")


def test_gated_attention_in_triton_interpreter():
    """CPU: the kernel tests above rerun in a process under TRITON_INTERPRET=1."""
    from tests.kernels.conftest import rerun_in_interpreter

    rerun_in_interpreter(__file__, "module_without or plain_path or refuses")
