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
from scalefold.model.primitives import LayerNorm

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / (b.norm() + 1e-2))


def _run(swap: bool, outgoing: bool, device: str, bf16: bool, lead=(1,),
         contiguous_grads: bool = False, bias_in_gating: bool = False,
         gating_kernel: bool = False, mask_lead=None):
    g = torch.Generator().manual_seed(7)
    mod = TriangleMultiplication(16, 8, outgoing)
    for p in mod.parameters():  # "final"/"gating" inits are constant: randomise all
        torch.nn.init.normal_(p, std=0.3, generator=g)
    mod = mod.to(device)
    if swap:
        swap_triangle_multiplication(mod, contiguous_grads=contiguous_grads,
                                     bias_in_gating=bias_in_gating, gating_kernel=gating_kernel)
        assert type(mod) is ChannelFirstTriangleMultiplication
    z = torch.randn(*lead, 11, 11, 16, generator=g).to(device).requires_grad_()
    mask_lead = lead if mask_lead is None else mask_lead
    mask = (torch.rand(*mask_lead, 11, 11, generator=g) > 0.2).float().to(device)
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
@pytest.mark.parametrize("outgoing", [True, False])
@pytest.mark.parametrize("lead", [(1,), (1, 3)])
def test_contiguous_grads_match_plain_fp32(device, outgoing, lead):
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    ref = _run(False, outgoing, device, False, lead)
    got = _run(True, outgoing, device, False, lead, contiguous_grads=True)
    errs = [rel(a, b) for a, b in zip(got, ref)]
    assert len(got) == len(ref) and max(errs) < 1e-5, errs


@pytest.mark.parametrize("outgoing", [True, False])
@pytest.mark.parametrize("contiguous", [False, True])
def test_triangle_product_grad_layout(outgoing, contiguous):
    """Autograd returns one operand's gradient as a transposed view; the written-out
    backward returns both contiguous."""
    mod = TriangleMultiplication(16, 8, outgoing)
    swap_triangle_multiplication(mod, contiguous_grads=contiguous)
    a, b = (torch.randn(1, 8, 12, 12, requires_grad=True) for _ in range(2))
    x = mod.triangle_product(a, b)
    da, db = torch.autograd.grad(x, (a, b), torch.randn_like(x))
    assert (da.is_contiguous() and db.is_contiguous()) == contiguous


def test_contiguous_grads_under_compile():
    """The autograd.Function is traced by torch.compile (as `compile_glue` does) with the
    same output and gradients."""
    ref = _run(False, False, "cpu", False)
    g = torch.Generator().manual_seed(7)
    mod = TriangleMultiplication(16, 8, False)
    for p in mod.parameters():
        torch.nn.init.normal_(p, std=0.3, generator=g)
    swap_triangle_multiplication(mod, contiguous_grads=True)
    z = torch.randn(1, 11, 11, 16, generator=g).requires_grad_()
    mask = (torch.rand(1, 11, 11, generator=g) > 0.2).float()
    out = torch.compile(mod, backend="aot_eager", fullgraph=True)(z, mask)
    grads = torch.autograd.grad(out, [z, *mod.parameters()],
                                torch.randn(out.shape, generator=g))
    errs = [rel(a, b) for a, b in zip([out, *grads], ref)]
    assert max(errs) < 1e-5, errs


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("contiguous_grads", [False, True])
def test_channel_first_matches_plain_bf16(device, contiguous_grads):
    ref = _run(False, True, device, True)
    got = _run(True, True, device, True, contiguous_grads=contiguous_grads)
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


def _forward_no_grad(bias_in_gating: bool, outgoing: bool, device: str, bf16: bool,
                     backend=None) -> torch.Tensor:
    g = torch.Generator().manual_seed(11)
    mod = TriangleMultiplication(16, 8, outgoing)
    for p in mod.parameters():
        torch.nn.init.normal_(p, std=0.3, generator=g)
    mod = swap_triangle_multiplication(mod.to(device), bias_in_gating=bias_in_gating)
    z = torch.randn(1, 3, 11, 11, 16, generator=g).to(device)
    mask = (torch.rand(1, 3, 11, 11, generator=g) > 0.2).float().to(device)
    if backend:
        # Each call compiles a new module through the same forward: without a reset the
        # parametrised cases together pass dynamo's recompile limit (8) on a GPU.
        torch._dynamo.reset()
    fn = torch.compile(mod, backend=backend, fullgraph=True) if backend else mod
    with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
        return fn(z, mask)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("outgoing", [True, False])
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_bias_in_gating_matches_without_grad(device, outgoing, backend):
    """Without gradients, traced (as `compile_glue` runs it), the bias joins in the
    gating: the same output as baddbmm's (fp32 to rounding; bf16 within one more rounding
    of the product), through aot_eager and, on a GPU, inductor."""
    if backend == "inductor" and device != "cuda":
        pytest.skip("inductor's code is what the GPU runs; the CPU traces with aot_eager")
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    ref = _forward_no_grad(False, outgoing, device, False)
    got = _forward_no_grad(True, outgoing, device, False, backend)
    assert rel(got, ref) < 1e-6
    ref16 = _forward_no_grad(False, outgoing, device, True)
    got16 = _forward_no_grad(True, outgoing, device, True, backend)
    assert got16.dtype == ref16.dtype
    assert 0 < rel(got16, ref) < 2e-2 and rel(got16, ref16) < 2e-2


@pytest.mark.parametrize("bias_in_gating", [False, True])
def test_bias_in_gating_traced_is_a_plain_matmul_and_eager_keeps_baddbmm(bias_in_gating):
    """Traced without gradients the stacked projection is a bmm with the bias left to the
    gating (only a compiled gating fuses the adds); run eagerly it stays baddbmm, the same
    bits as without the field."""
    traced: set[str] = set()

    def spy(gm, example_inputs):
        traced.update(getattr(n.target, "__name__", str(n.target)) for n in gm.graph.nodes)
        return gm

    _forward_no_grad(bias_in_gating, True, "cpu", True, backend=spy)
    assert ("bmm" in traced and "baddbmm" not in traced) == bias_in_gating
    assert "baddbmm" in traced or bias_in_gating
    for bf16 in (False, True):
        assert torch.equal(_forward_no_grad(bias_in_gating, True, "cpu", bf16),
                           _forward_no_grad(False, True, "cpu", bf16))


def test_bias_in_gating_keeps_the_gradient_path():
    """With gradients nothing changes: the same bits, output and every gradient."""
    for bf16 in (False, True):
        ref = _run(True, True, "cpu", bf16)
        got = _run(True, True, "cpu", bf16, bias_in_gating=True)
        assert all(torch.equal(a, b) for a, b in zip(got, ref))


@pytest.mark.parametrize("outgoing", [True, False])
@pytest.mark.parametrize("lead,mask_lead", [((1,), (1,)), ((1, 3), (1, 3)), ((1, 3), (1, 1))],
                         ids=["pair", "templates", "shared_mask"])
def test_gating_kernel_matches_autograd_fp32(kern, device, outgoing, lead, mask_lead,
                                             monkeypatch):
    """`gating_kernel`: the same forward bits, and every gradient (the stacked bias's,
    routed through the gating's backward, among them) as autograd's gating, for the
    Evoformer's pair, the template stack's [*, T] and a mask shared over templates."""
    import scalefold.kernels.trimul as trimul

    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    ref = _run(True, outgoing, device.type, False, lead, contiguous_grads=True,
               mask_lead=mask_lead)
    calls = []
    gated = trimul.gated_projections
    monkeypatch.setattr(trimul, "gated_projections",
                        lambda *a: calls.append(1) or gated(*a))
    got = _run(True, outgoing, device.type, False, lead, contiguous_grads=True,
               gating_kernel=True, mask_lead=mask_lead)
    assert calls  # the kernel's path ran
    assert torch.equal(got[0], ref[0])
    errs = [rel(a, b) for a, b in zip(got[1:], ref[1:])]
    assert len(got) == len(ref) and max(errs) < 1e-6, errs


def test_gating_kernel_without_grad_takes_the_plain_path(kern, device):
    """Without gradients (recycling, evaluation) the kernel's Function is not used: the
    same bits as without the field."""
    with torch.no_grad():
        mods = []
        for kernel in (False, True):
            g = torch.Generator().manual_seed(5)
            mod = TriangleMultiplication(16, 8, True)
            for p in mod.parameters():
                torch.nn.init.normal_(p, std=0.3, generator=g)
            mods.append(swap_triangle_multiplication(mod.to(device), gating_kernel=kernel))
        z = torch.randn(1, 11, 11, 16, generator=g).to(device)
        mask = (torch.rand(1, 11, 11, generator=g) > 0.2).float().to(device)
        assert torch.equal(mods[0](z, mask), mods[1](z, mask))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gating_kernel_bf16():
    """bf16 under autocast: the forward's bits, and gradients within bf16 rounding of
    autograd's (one rounding of each gradient in the kernel)."""
    ref = _run(True, True, "cuda", True, contiguous_grads=True)
    got = _run(True, True, "cuda", True, contiguous_grads=True, gating_kernel=True)
    assert torch.equal(got[0], ref[0])
    assert all(a.dtype == b.dtype for a, b in zip(got, ref))
    errs = [rel(a, b) for a, b in zip(got[1:], ref[1:])]
    assert max(errs) < 2e-2, errs


def _gating_forward_no_grad(device, outgoing: bool, bf16: bool, field: bool, lead=(1, 3),
                            mask_lead=None, compiled: bool = False,
                            c_z: int = 16) -> torch.Tensor:
    """The swapped module (`bias_in_gating`, as `h200` has it) without gradients, with or
    without `forward_projection_kernel`; `compiled`: through torch.compile with dynamic
    shapes (aot_eager on the CPU, inductor on a GPU), as the evaluation copy runs it."""
    g = torch.Generator().manual_seed(13)
    mod = TriangleMultiplication(c_z, 8, outgoing)
    for p in mod.parameters():
        torch.nn.init.normal_(p, std=0.3, generator=g)
    mod = swap_triangle_multiplication(mod.to(device), bias_in_gating=True,
                                       forward_projection_kernel=field)
    z = torch.randn(*lead, 11, 11, c_z, generator=g).to(device)
    mask_lead = lead if mask_lead is None else mask_lead
    mask = (torch.rand(*mask_lead, 11, 11, generator=g) > 0.2).float().to(device)
    fn = mod
    if compiled:
        torch._dynamo.reset()
        backend = "inductor" if torch.device(device).type == "cuda" else "aot_eager"
        fn = torch.compile(mod, backend=backend, dynamic=True)
    with torch.no_grad(), torch.autocast(torch.device(device).type, dtype=torch.bfloat16,
                                         enabled=bf16):
        return fn(z, mask)


@pytest.mark.parametrize("outgoing", [True, False])
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("lead,mask_lead", [((1,), (1,)), ((1, 3), (1, 3)), ((1, 3), (1, 1))],
                         ids=["pair", "templates", "shared_mask"])
def test_forward_projection_kernel_matches_plain_gating(kern, device, outgoing, compiled,
                                                        lead, mask_lead, monkeypatch):
    """`forward_projection_kernel` without gradients: the four projections and the gating
    in one kernel (eager, and compiled with dynamic shapes) give the plain module's a and
    b: fp32 to rounding, bf16 within its rounding (the projection is not rounded before
    the gating); c_z = 16 and 32 (the whole K in one tile)."""
    import scalefold.kernels.trimul as trimul

    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    calls = []
    kernel = trimul.project_gate_forward
    monkeypatch.setattr(trimul, "project_gate_forward",
                        lambda *a: calls.append(1) or kernel(*a))
    # bf16 on a GPU only: the Triton interpreter's bf16 tl.dot is wrong (checked with
    # Triton 3.9 on the CPU: a 16x16 product off by 1e10)
    precisions = (False, True) if device.type == "cuda" else (False,)
    for c_z in (16, 32):
        for bf16 in precisions:
            ref = _gating_forward_no_grad(device, outgoing, bf16, False, lead, mask_lead,
                                          c_z=c_z)
            got = _gating_forward_no_grad(device, outgoing, bf16, True, lead, mask_lead,
                                          compiled, c_z=c_z)
            assert got.dtype == ref.dtype and got.shape == ref.shape
            assert rel(got, ref) < (1e-2 if bf16 else 1e-6)
    assert len(calls) == 2 * len(precisions)


@pytest.mark.parametrize("norm", [False, True], ids=["normalised_input", "raw_stream"])
@pytest.mark.parametrize("launch", [(16, 4, 1), (32, 4, 2), (64, 4, 1)],
                         ids=["rows16", "rows32_stages2", "rows64"])
def test_projection_gating_launches_give_the_same_bits(kern, device, norm, launch):
    """`ProjectionGatingLaunch`: a program looping over every block of output channels
    (`groups_in_loop`: the z tile read and normalised once) computes each output from
    the same z tile and weights with the same operations as a program taking one block:
    the same bits at the same block of positions (in the interpreter; on a GPU within
    fp32 rounding, the compiled forms may contract differently), and every block of
    positions the same gating within fp32 rounding. c = 80: two blocks of 64 channels,
    the second partial; 11 x 11 positions: a partial last block of positions."""
    from scalefold.kernels.trimul_projection import (
        DEFAULT_LAUNCH,
        ProjectionGatingLaunch,
        project_gate_forward,
    )

    g = torch.Generator().manual_seed(21)
    c, c_z = 80, 32
    z = torch.randn(2, 11, 11, c_z, generator=g).to(device)
    w = (torch.randn(4 * c, c_z, generator=g) / c_z**0.5).to(device)
    bias = torch.randn(4 * c, generator=g).to(device)
    m = (torch.rand(2, 1, 121, generator=g) > 0.2).float().to(device)
    ln = None
    if norm:
        ln = LayerNorm(c_z)  # scalefold.model.primitives
        with torch.no_grad():  # drawn on the host: the generator is a CPU one
            ln.weight.normal_(generator=g)
            ln.bias.normal_(generator=g)
        ln = ln.to(device)
    with torch.no_grad():
        default = project_gate_forward(z, w, bias, m, c, norm=ln, launch=DEFAULT_LAUNCH)
        one = project_gate_forward(z, w, bias, m, c, norm=ln,
                                   launch=ProjectionGatingLaunch(*launch, False))
        got = project_gate_forward(z, w, bias, m, c, norm=ln,
                                   launch=ProjectionGatingLaunch(*launch, True))
    for x, y, d in zip(got, one, default, strict=True):
        assert x.shape == (2, c, 11, 11)
        if device.type == "cuda":
            assert rel(x, y) < 1e-5
        else:
            assert torch.equal(x, y)
        assert rel(x, d) < (1e-5 if device.type == "cuda" else 1e-6)
    # and the gating itself: a = sigmoid(z W_ag + b_ag) m (z W_ap + b_ap), b likewise
    zn = torch.nn.functional.layer_norm(z, (c_z,), ln.weight, ln.bias, ln.eps) if norm else z
    proj = zn.reshape(2, 121, c_z) @ w.T + bias  # [2, L, 4c]
    a_p, a_g, b_p, b_g = proj.split(c, dim=-1)
    mm = m.reshape(2, 121, 1)
    for x, (p_, g_) in zip(got, ((a_p, a_g), (b_p, b_g)), strict=True):
        ref = (torch.sigmoid(g_) * mm * p_).transpose(1, 2).reshape(2, c, 11, 11)
        assert rel(x, ref) < (2e-3 if device.type == "cuda" else 1e-5)


def test_forward_projection_kernel_with_grad_or_unfit_width_takes_the_plain_path(kern, device):
    """With gradients, or an input width the kernel does not take (c_z = 24: not a power
    of two), the field changes nothing: the same bits."""
    with torch.no_grad():
        ref = _gating_forward_no_grad(device, True, False, False, c_z=24)
        got = _gating_forward_no_grad(device, True, False, True, c_z=24)
    assert torch.equal(got, ref)
    import scalefold.kernels.trimul as trimul

    mods = []
    for field in (False, True):
        g = torch.Generator().manual_seed(7)
        mod = TriangleMultiplication(16, 8, True)
        for p in mod.parameters():
            torch.nn.init.normal_(p, std=0.3, generator=g)
        mods.append(trimul.swap_triangle_multiplication(mod.to(device),
                                                        forward_projection_kernel=field))
    z = torch.randn(1, 11, 11, 16).to(device).requires_grad_()
    mask = torch.ones(1, 11, 11).to(device)
    outs = [m(z, mask) for m in mods]
    assert torch.equal(outs[0], outs[1])


def test_gating_kernel_in_triton_interpreter():
    """CPU: the kernel tests above rerun in a process under TRITON_INTERPRET=1."""
    from tests.kernels.conftest import rerun_in_interpreter

    rerun_in_interpreter(__file__, "gating_kernel_matches or gating_kernel_without or "
                                   "forward_projection_kernel")
