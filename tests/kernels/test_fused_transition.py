"""A narrow transition and its residual add as one kernel (`transition_forward_kernel`):
the kernel against the plain math, the module's `added_to`, the plain path with gradients
or an unfit width, the whole tiny model, the swap through `apply_speedups`."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from scalefold.kernels import FusedTransition, apply_speedups, swap_fused_transitions
from scalefold.model import AlphaFold, AlphaFoldConfig
from scalefold.model.msa import Transition
from scalefold.train.config import SpeedConfig


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-30)).item()


def _transition(c: int, n: int, seed: int = 0) -> Transition:
    torch.manual_seed(seed)
    t = Transition(c, n)
    with torch.no_grad():  # the "final" init zeroes linear_2: give every parameter values
        for p in t.parameters():
            p.normal_(0, 0.3)
    return t.eval()


def _plain_update(t: Transition, r: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    h = F.relu(F.linear(F.layer_norm(x, (x.shape[-1],), t.layer_norm.weight,
                                     t.layer_norm.bias, t.layer_norm.eps),
                        t.linear_1.weight, t.linear_1.bias))
    return r + F.linear(h, t.linear_2.weight, t.linear_2.bias)


@pytest.mark.parametrize("same", [True, False], ids=["r_is_x", "separate_r"])
@pytest.mark.parametrize("c,n", [(32, 4), (16, 8), (64, 2), (256, 1)])
def test_kernel_is_the_transition_plus_the_residual(kern, device, same, c, n):
    """fp32: r + linear_2(relu(linear_1(LayerNorm(x)))) to rounding; rows not a multiple of
    the block, one or more blocks of hidden channels, the MSA width's own launch."""
    from scalefold.kernels.fused_transition import transition_forward

    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    t = _transition(c, n).to(device)
    g = torch.Generator().manual_seed(2)
    x = (2 * torch.randn(3, 47, c, generator=g) + 0.5).to(device)
    r = x if same else torch.randn(3, 47, c, generator=g).to(device)
    with torch.no_grad():
        got = transition_forward(x, t.layer_norm, t.linear_1.weight, t.linear_1.bias,
                                 t.linear_2.weight, t.linear_2.bias, r)
        want = _plain_update(t, r, x)
    assert got.shape == want.shape and got.dtype == want.dtype
    assert rel(got, want) < 1e-6


def test_module_adds_its_update_in_the_kernel(kern, device, monkeypatch):
    """`added_to` through the kernel without gradients; with gradients, or a width the
    kernel does not take (24: not a power of two; 256: the MSA transition), the plain
    module's r + forward(x), bit for bit."""
    import scalefold.kernels.fused_transition as ft

    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    calls = []
    kernel = ft.transition_forward
    monkeypatch.setattr(ft, "transition_forward", lambda *a: calls.append(1) or kernel(*a))
    plain = _transition(32, 4).to(device)
    fused = swap_fused_transitions(copy.deepcopy(plain))
    assert isinstance(fused, FusedTransition)
    x = torch.randn(2, 40, 32, device=device)
    with torch.no_grad():
        got, want = fused.added_to(x, x), x + plain(x)
    assert calls == [1] and rel(got, want) < 1e-6
    xg = x.clone().requires_grad_()
    assert torch.equal(fused.added_to(xg, xg), xg + plain(xg)) and calls == [1]
    for c in (24, 256):
        p = _transition(c, 2).to(device)
        f = swap_fused_transitions(copy.deepcopy(p))
        y = torch.randn(2, 5, c, device=device)
        with torch.no_grad():
            assert torch.equal(f.added_to(y, y), y + p(y))
    assert calls == [1]


def test_traced_update_breaks_around_the_kernel_and_adds_its_update(kern, device,
                                                                   monkeypatch):
    """`added_to` traced by torch.compile with dynamic shapes (a whole block compiled;
    aot_eager in the interpreter): the kernel a graph break that
    runs, the eager values at two lengths."""
    import scalefold.kernels.fused_transition as ft

    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    launches = []
    untraced = ft._transition_untraced
    monkeypatch.setattr(ft, "_transition_untraced", torch.compiler.disable(
        lambda *a: launches.append(1) or untraced(*a), recursive=True))
    t = swap_fused_transitions(_transition(32, 4).to(device))
    backend = "inductor" if device.type == "cuda" else "aot_eager"
    torch._dynamo.reset()
    compiled = torch.compile(lambda x: t.added_to(x, x), dynamic=True, backend=backend)
    for n in (40, 56):
        x = torch.randn(2, n, 32, device=device)
        with torch.no_grad():
            assert rel(compiled(x), t.added_to(x, x)) < 1e-6
    assert len(launches) == 2  # the compiled calls, through the break
    torch._dynamo.reset()


def test_whole_model_without_gradients_matches_plain(kern, device):
    """The tiny model in evaluation with every transition fused (the MSA, pair, extra-MSA
    and template transitions all fit its widths): the plain model's outputs (fp32, to
    rounding)."""
    from scalefold.utils.synthetic import synthetic_batch

    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)
    plain = AlphaFold(AlphaFoldConfig.tiny()).to(device).eval()
    with torch.no_grad():  # the "final" inits zero every update's last projection
        for p in plain.parameters():
            p.add_(torch.randn_like(p), alpha=0.05)
    fused = swap_fused_transitions(copy.deepcopy(plain))
    assert sum(isinstance(m, FusedTransition) for m in fused.modules()) >= 4
    batch = synthetic_batch(None, n_res=20, n_clust=6, n_extra=10, n_templ=2,
                            num_iterations=2, device=device)
    with torch.no_grad():
        want, got = plain(batch), fused(batch)
    for key in ("msa", "pair", "single", "final_atom_positions"):
        assert rel(got[key], want[key]) < 1e-4, key


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bf16_within_rounding_of_the_plain_module():
    """bf16 (autocast, a bf16 stream): the plain module's update within bf16 rounding; the
    result in the stream's dtype."""
    t = _transition(128, 4).cuda()
    fused = swap_fused_transitions(copy.deepcopy(t))
    x = torch.randn(1, 96, 96, 128, device="cuda").bfloat16()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        got, want = fused.added_to(x, x), x + t(x)
    assert got.dtype == torch.bfloat16 and rel(got, want) < 1e-2


def test_the_field_swaps_every_transition():
    model = AlphaFold(AlphaFoldConfig.tiny())
    apply_speedups(model, SpeedConfig(transition_forward_kernel=True), "fp32")
    ts = [m for m in model.modules() if isinstance(m, Transition)]
    assert ts and all(isinstance(m, FusedTransition) for m in ts)
    plain = AlphaFold(AlphaFoldConfig.tiny())
    apply_speedups(plain, SpeedConfig(), "fp32")
    assert not any(isinstance(m, FusedTransition) for m in plain.modules())


def test_fused_transition_in_triton_interpreter():
    """CPU: the kernel tests above rerun in a process under TRITON_INTERPRET=1."""
    from tests.kernels.conftest import rerun_in_interpreter

    rerun_in_interpreter(__file__, "kernel_is or adds_its_update or whole_model")
