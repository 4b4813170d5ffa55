"""A LayerNorm and its projection as one kernel without gradients (`ln_linear`): the
kernel against LayerNorm-then-Linear, the modules' seams against the plain modules, the
plain path with gradients, the swap through `apply_speedups`."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from scalefold.kernels import (
    apply_speedups,
    swap_attention_projections,
    swap_triangle_multiplication,
)
from scalefold.kernels.ln_linear import (
    FusedOutputAttention,
    NormFusedMSAAttention,
    NormFusedOuterProductMean,
    NormFusedTransition,
    NormFusedTriangleAttention,
    NormFusedTriangleMultiplication,
    swap_norm_projections,
)
from scalefold.model import AlphaFold, AlphaFoldConfig
from scalefold.model.attention import Attention
from scalefold.model.msa import MSAColumnAttention, MSARowAttentionWithPairBias, Transition
from scalefold.model.pair import OuterProductMean, TriangleAttention, TriangleMultiplication
from scalefold.model.primitives import LayerNorm
from scalefold.train.config import PRESETS


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-30)).item()


def _perturbed(mod: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # a non-trivial LayerNorm, biases, gates
        for p in mod.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    return mod


@pytest.mark.parametrize("k,n", [(48, 33), (64, 16), (128, 300), (256, 70)])
@pytest.mark.parametrize("relu,bias", [(False, True), (True, True), (False, False)])
def test_kernel_is_layer_norm_then_linear(kern, device, k, n, relu, bias):
    """fp32: LayerNorm then F.linear (and ReLU) to rounding, a width not a power of two
    and one wider than a column block among them; bf16 (GPU): within its rounding."""
    from scalefold.kernels.ln_linear import layer_norm_linear

    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(k + n)
    ln = _perturbed(LayerNorm(k), k).to(device)
    x = (torch.randn(3, 37, k) * 3 + 1).to(device)
    w = (torch.randn(n, k) / k**0.5).to(device)
    b = torch.randn(n).to(device) if bias else None
    with torch.no_grad():
        got = layer_norm_linear(x, ln, w, b, relu=relu)
        want = F.linear(ln(x), w, b)
        want = want.relu() if relu else want
    assert got.shape == (3, 37, n) and got.dtype == torch.float32
    assert rel(got, want) < 1e-6
    if device.type == "cuda":  # the interpreter's bf16 tl.dot is wrong
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            got = layer_norm_linear(x.bfloat16(), ln, w.bfloat16(),
                                    None if b is None else b.bfloat16(), relu=relu)
            want = F.linear(ln(x.bfloat16()).bfloat16(), w, b)
            want = want.relu() if relu else want
        assert got.dtype == torch.bfloat16 and rel(got, want) < 1e-2


@pytest.mark.parametrize("lead", [(), (3,)], ids=["one", "batched"])
def test_kernel_reads_channels_first(kern, device, lead):
    """channels_first: x [*, K, L] normalised over K, the result [*, L, N] as LayerNorm
    then F.linear on the transposed x (fp32); out_channels_first: rows in, [*, N, L] out."""
    from scalefold.kernels.ln_linear import layer_norm_linear

    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    ln = _perturbed(LayerNorm(32), 2).to(device)
    x = torch.randn(*lead, 32, 77).to(device)  # [*, K, L]
    w, b = torch.randn(20, 32).to(device) / 6, torch.randn(20).to(device)
    with torch.no_grad():
        got = layer_norm_linear(x, ln, w, b, channels_first=True)
        want = F.linear(ln(x.transpose(-1, -2)), w, b)
    assert got.shape == (*lead, 77, 20) and rel(got, want) < 1e-6
    rows = x.transpose(-1, -2).contiguous()  # [*, L, K]
    with torch.no_grad():  # out_channels_first: [*, L, K] -> [*, N, L]
        got = layer_norm_linear(rows, ln, w, b, out_channels_first=True)
    assert got.shape == (*lead, 20, 77) and rel(got, want.transpose(-1, -2)) < 1e-6


@pytest.mark.parametrize("channels_first", [False, True], ids=["rows", "channels_first"])
def test_kernel_gates_its_output(kern, device, channels_first):
    """gate: the result times sigmoid(gate) (SigmoidGate's x · sigmoid(g)), rows of
    channels or a channels-first input; a gate that is a strided view is read in place;
    refused with a channels-first output."""
    from scalefold.kernels.ln_linear import layer_norm_linear

    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    ln = _perturbed(LayerNorm(32), 4).to(device)
    rows = torch.randn(2, 45, 32).to(device)  # [B, L, K]
    x = rows.transpose(-1, -2).contiguous() if channels_first else rows
    w, b = torch.randn(24, 32).to(device) / 6, torch.randn(24).to(device)
    g = torch.randn(2, 45, 48).to(device)[..., ::2]  # [B, L, N], columns 2 apart
    with torch.no_grad():
        got = layer_norm_linear(x, ln, w, b, channels_first=channels_first, gate=g)
        want = F.linear(ln(rows), w, b) * torch.sigmoid(g)
        assert got.shape == (2, 45, 24) and rel(got, want) < 1e-6
        with pytest.raises(ValueError, match="gate"):
            layer_norm_linear(rows, ln, w, b, out_channels_first=True, gate=g)


@pytest.mark.parametrize("n", [24, 100])  # 100: two blocks of the 64 columns it takes
@pytest.mark.parametrize("channels_first", [False, True], ids=["rows", "channels_first"])
def test_kernel_adds_a_residual(kern, device, channels_first, n):
    """residual: residual + the (gated) result, the residual read through its strides; the
    result in the wider dtype (an fp32 stream plus a bf16 update is fp32, as the eager
    add); refused with a channels-first output."""
    from scalefold.kernels.ln_linear import layer_norm_linear

    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    ln = _perturbed(LayerNorm(32), 5).to(device)
    rows = torch.randn(2, 45, 32).to(device)  # [B, L, K]
    x = rows.transpose(-1, -2).contiguous() if channels_first else rows
    w, b = torch.randn(n, 32).to(device) / 6, torch.randn(n).to(device)
    g = torch.randn(2, 45, n).to(device)
    r = torch.randn(2, n, 45).to(device).transpose(-1, -2)  # [B, L, N], strided
    with torch.no_grad():
        got = layer_norm_linear(x, ln, w, b, channels_first=channels_first, gate=g,
                                residual=r)
        want = r + F.linear(ln(rows), w, b) * torch.sigmoid(g)
        assert got.shape == (2, 45, n) and rel(got, want) < 1e-6
        got = layer_norm_linear(x, ln, w, b, channels_first=channels_first, residual=r)
        assert rel(got, r + F.linear(ln(rows), w, b)) < 1e-6
        with pytest.raises(ValueError, match="residual"):
            layer_norm_linear(rows, ln, w, b, out_channels_first=True, residual=r)
    if device.type == "cuda":  # bf16 products (the interpreter's bf16 tl.dot is wrong)
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            got = layer_norm_linear(x.bfloat16(), ln, w.bfloat16(), b.bfloat16(),
                                    channels_first=channels_first, residual=r)
            want = r + F.linear(ln(rows.bfloat16()).bfloat16(), w, b)
        assert got.dtype == torch.float32 and rel(got, want) < 1e-2


@pytest.mark.parametrize("n", [24, 100])
def test_linear_epilogue_adds_a_residual(kern, device, n):
    """linear_epilogue: residual + F.linear(x, w, b), no LayerNorm, the residual a strided
    view; refused with gradients."""
    from scalefold.kernels.ln_linear import linear_epilogue

    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    x = torch.randn(3, 37, 32).to(device)
    w, b = torch.randn(n, 32).to(device) / 6, torch.randn(n).to(device)
    r = torch.randn(3, n, 37).to(device).transpose(-1, -2)
    with torch.no_grad():
        got = linear_epilogue(x, w, b, r)
    assert got.shape == (3, 37, n) and rel(got, r + F.linear(x, w, b)) < 1e-6
    with pytest.raises(RuntimeError, match="no backward"):
        linear_epilogue(x, w, b, r)


def test_kernel_launch_for_each_call(kern, device):
    """Without a launch each call takes the measured one for its width and epilogue
    (`launch_for`): 512 columns the wide launch, a residual the epilogue's, a gate with it
    the gated epilogue's, narrow outputs the default; each gives what the default launch
    gives (on the GPU bit for bit in bf16: a launch never splits a row's sum)."""
    from scalefold.kernels import ln_linear as lnl

    assert lnl.launch_for(512, False, False) == lnl.WIDE_LAUNCH
    assert lnl.launch_for(128, False, True) == lnl.EPILOGUE_LAUNCH
    assert lnl.launch_for(128, True, True) == lnl.GATED_EPILOGUE_LAUNCH
    assert lnl.launch_for(4, False, False) == lnl.launch_for(128, False, False) \
        == lnl.DEFAULT_LAUNCH
    cuda = device.type == "cuda"
    dt = torch.bfloat16 if cuda else torch.float32
    g = torch.Generator().manual_seed(12)
    ln = _perturbed(LayerNorm(128), 12).to(device)
    x = torch.randn(2, 70, 128, generator=g).to(device, dt)
    w512 = (torch.randn(512, 128, generator=g) / 11).to(device, dt)
    w128 = (torch.randn(128, 128, generator=g) / 11).to(device, dt)
    b128 = torch.randn(128, generator=g).to(device, dt)
    gate = torch.randn(2, 70, 128, generator=g).to(device, dt)
    r = torch.randn(2, 70, 128, generator=g).to(device)
    calls = [
        lambda lc: lnl.layer_norm_linear(x, ln, w512, None, launch=lc),
        lambda lc: lnl.linear_epilogue(x, w128, b128, r, launch=lc),
        lambda lc: lnl.layer_norm_linear(x.transpose(-1, -2), ln, w128, b128,
                                         channels_first=True, gate=gate, residual=r,
                                         launch=lc),
    ]
    with torch.no_grad(), torch.autocast(device.type, dtype=dt, enabled=cuda):
        for call in calls:
            got, want = call(None), call(lnl.DEFAULT_LAUNCH)
            if cuda:
                assert torch.equal(got, want)
            else:
                assert rel(got, want) < 1e-6


def test_attentions_add_their_update_in_the_output_projection(kern, device, monkeypatch):
    """The MSA row and column attentions' and both triangle attentions' `added_to(r, ...)`:
    r + the plain module's update, through one `linear_epilogue` call each (the add in the
    output projection's epilogue); the plain modules' `added_to` is r + forward."""
    import scalefold.kernels.ln_linear as ln_linear

    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    plain, _, fused = _pair(device)
    calls = []
    kernel = ln_linear.linear_epilogue
    monkeypatch.setattr(ln_linear, "linear_epilogue",
                        lambda *a, **kw: calls.append(a[1].shape) or kernel(*a, **kw))
    g = torch.Generator().manual_seed(8)
    m = torch.randn(1, 5, 11, 32, generator=g).to(device)
    z = torch.randn(1, 11, 11, 16, generator=g).to(device)
    rm = torch.randn(1, 5, 11, 32, generator=g).to(device)
    rz = torch.randn(1, 11, 11, 16, generator=g).to(device)
    msa_mask = (torch.rand(1, 5, 11, generator=g) > 0.2).float().to(device)
    pair_mask = (torch.rand(1, 11, 11, generator=g) > 0.2).float().to(device)
    cases = [("msa_row", rm, (m, z, msa_mask)), ("msa_col", rm, (m, msa_mask)),
             ("tri_start", rz, (z, pair_mask)), ("tri_end", rz, (z, pair_mask))]
    with torch.no_grad():
        for name, r, args in cases:
            want = r + plain[name](*args)
            assert torch.equal(plain[name].added_to(r, *args), want)
            assert rel(fused[name].added_to(r, *args), want) < 1e-6
    # [c_m, H·c] the MSA attentions' linear_o, [c_z, H·c] the triangle attentions'
    assert calls == [(32, 16), (32, 16), (16, 16), (16, 16)]
    # the outer product mean's update: made in its forward (fused by a compiled module)
    with torch.no_grad():
        want = rz + plain["opm"](m, msa_mask)
        assert torch.equal(plain["opm"].added_to(rz, m, msa_mask), want)
        assert rel(fused["opm"].added_to(rz, m, msa_mask), want) < 1e-6


@pytest.mark.parametrize("channel_first", [False, True], ids=["plain", "channel_first"])
def test_triangle_multiplication_adds_its_update_in_the_kernel(kern, device, channel_first,
                                                               monkeypatch):
    """`added_to(r, z, mask)` (the residual update without dropout): r + the plain
    module's update, the add in the output projection's kernel (its residual argument);
    with gradients r + forward, no fused kernel."""
    import scalefold.kernels.ln_linear as ln_linear

    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    plain, _, fused = _pair(device, channel_first)
    calls = []
    kernel = ln_linear.layer_norm_linear
    monkeypatch.setattr(ln_linear, "layer_norm_linear", lambda *a, **kw: calls.append(
        kw.get("residual") is not None) or kernel(*a, **kw))
    g = torch.Generator().manual_seed(7)
    z = torch.randn(1, 11, 11, 16, generator=g).to(device)
    r = torch.randn(1, 11, 11, 16, generator=g).to(device)
    mask = (torch.rand(1, 11, 11, generator=g) > 0.2).float().to(device)
    for name in ("trimul_out", "trimul_in"):
        calls.clear()
        with torch.no_grad():
            want = r + plain[name](z, mask)
            got = fused[name].added_to(r, z, mask)
        assert rel(got, want) < 1e-6 and calls[-1] and calls.count(True) == 1
    calls.clear()
    zg = z.clone().requires_grad_()
    got = fused["trimul_out"].added_to(r, zg, mask)
    assert not calls and torch.equal(got, r + fused["trimul_out"](zg, mask))


@pytest.mark.parametrize("channel_first,projection", [(False, False), (True, False),
                                                      (True, True)],
                         ids=["plain", "channel_first", "projection_kernel"])
def test_whole_model_without_gradients_matches_plain(kern, device, channel_first, projection,
                                                     monkeypatch):
    """The tiny model in evaluation with the mixins (and the channels-first triangle
    multiplication): every stack's blocks reach the fused kernels through their seams,
    the residual updates through `SharedDropout.update` included, and the model's
    outputs are the plain model's (fp32, to rounding)."""
    import scalefold.kernels.ln_linear as ln_linear
    from scalefold.utils.synthetic import synthetic_batch

    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    counts = {"layer_norm_linear": 0, "linear_epilogue": 0, "project_gate_forward": 0}
    for name in counts:
        kernel = getattr(ln_linear, name)

        def counted(*a, _k=kernel, _n=name, **kw):
            counts[_n] += 1
            return _k(*a, **kw)

        monkeypatch.setattr(ln_linear, name, counted)
    torch.manual_seed(0)
    plain = _perturbed(AlphaFold(AlphaFoldConfig.tiny()), 11).to(device).eval()
    if channel_first:
        swap_triangle_multiplication(plain, norm_kernel=True)
    fused = copy.deepcopy(plain)
    if projection:
        swap_triangle_multiplication(fused, norm_kernel=True, forward_projection_kernel=True)
    fused = swap_norm_projections(swap_attention_projections(fused))
    batch = synthetic_batch(None, n_res=20, n_clust=6, n_extra=10, n_templ=2,
                            num_iterations=2, device=device)
    with torch.no_grad():
        want, got = plain(batch), fused(batch)
    assert counts["layer_norm_linear"] > 0 and counts["linear_epilogue"] > 0
    assert (counts["project_gate_forward"] > 0) == projection
    for key in ("msa", "pair", "single", "final_atom_positions"):
        assert rel(got[key], want[key]) < 1e-4, key


def test_kernel_refuses_gradients_and_other_dtypes(kern, device):
    from scalefold.kernels.ln_linear import layer_norm_linear

    ln = LayerNorm(16).to(device)
    x, w = torch.randn(4, 16, device=device), torch.randn(8, 16, device=device)
    with pytest.raises(RuntimeError, match="no backward"):
        layer_norm_linear(x, ln, w)
    with torch.no_grad(), pytest.raises(ValueError, match="compute dtype"):
        layer_norm_linear(x, ln, w.double())


def _modules(device) -> nn.ModuleDict:
    return nn.ModuleDict({
        "transition": Transition(16, 4),
        "msa_row": MSARowAttentionWithPairBias(32, 16, 8, 2, 1e9),
        "msa_col": MSAColumnAttention(32, 8, 2, 1e9),
        "tri_start": TriangleAttention(16, 8, 2, 1e9, starting=True),
        "tri_end": TriangleAttention(16, 8, 2, 1e9, starting=False),
        "opm": OuterProductMean(32, 16, 4, 1e-3),
        "trimul_out": TriangleMultiplication(16, 8, outgoing=True),
        "trimul_in": TriangleMultiplication(16, 8, outgoing=False),
    }).to(device)


def _run(mods: nn.ModuleDict, device) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    m = torch.randn(1, 5, 11, 32, generator=g).to(device)  # [B, S, N, c_m]
    z = torch.randn(1, 11, 11, 16, generator=g).to(device)  # [B, N, N, c_z]
    msa_mask = (torch.rand(1, 5, 11, generator=g) > 0.2).float().to(device)
    pair_mask = (torch.rand(1, 11, 11, generator=g) > 0.2).float().to(device)
    return [mods["transition"](z), mods["msa_row"](m, z, msa_mask),
            mods["msa_col"](m, msa_mask), mods["tri_start"](z, pair_mask),
            mods["tri_end"](z, pair_mask), mods["opm"](m, msa_mask),
            mods["trimul_out"](z, pair_mask), mods["trimul_in"](z, pair_mask)]


def _pair(device, channel_first: bool = False, projection_kernel: bool = False):
    plain = _perturbed(_modules("cpu"), 1).to(device)
    if channel_first:  # h200's triangle multiplication (the mixin goes in front of it)
        swap_triangle_multiplication(plain, norm_kernel=True,
                                     forward_projection_kernel=projection_kernel)
    stacked = swap_attention_projections(copy.deepcopy(plain))
    fused = swap_norm_projections(copy.deepcopy(stacked))
    return plain, stacked, fused


def _fused_calls_matching_plain(device, channel_first: bool, monkeypatch,
                                projection_kernel: bool = False) -> list:
    """The eight modules run plain and fused without gradients: the outputs equal (fp32,
    to rounding); returns the weight shapes of the fused kernel's calls, in order, and
    ("norm", c_z) for each call of the projection-gating kernel with its LayerNorm."""
    import scalefold.kernels.ln_linear as ln_linear

    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    calls = []
    kernel = ln_linear.layer_norm_linear
    monkeypatch.setattr(ln_linear, "layer_norm_linear",
                        lambda *a, **kw: calls.append(a[2].shape) or kernel(*a, **kw))
    gating = ln_linear.project_gate_forward
    monkeypatch.setattr(ln_linear, "project_gate_forward", lambda *a, norm=None: calls.append(
        ("norm", norm.weight.shape[0])) or gating(*a, norm=norm))
    plain, _, fused = _pair(device, channel_first, projection_kernel)
    with torch.no_grad():
        want, got = _run(plain, device), _run(fused, device)
    for a, b in zip(got, want, strict=True):
        assert a.shape == b.shape and rel(a, b) < 1e-6
    return calls


def test_msa_pair_bias_is_written_heads_first(kern, device):
    """The MSA row attention's fused pair bias is written heads first, the layout the
    attention core reads (a row-major one it copies in every block), with the row-major
    kernel's values, and no copy is made on its way to the core."""
    import scalefold.kernels.attention as attention
    from scalefold.kernels.ln_linear import layer_norm_linear

    _, _, fused = _pair(device)
    mod = fused["msa_row"]
    z = torch.randn(1, 11, 11, 16, device=device)
    with torch.no_grad():
        got = mod.normalized_pair_bias(z)  # [1, N, N, H]
        want = layer_norm_linear(z, mod.layer_norm_z, mod.linear_z.weight)
        assert got.shape == want.shape and torch.equal(got, want)
        assert got.movedim(-1, -3).is_contiguous()
        bias = got.permute(0, 3, 1, 2).unsqueeze(-4)  # as the module passes it
        assert attention._rows_contiguous(bias, 10**9) is bias


@pytest.mark.parametrize("channel_first", [False, True], ids=["plain", "channel_first"])
def test_modules_without_gradients_fuse_each_layer_norm(kern, device, channel_first,
                                                        monkeypatch):
    """The eight modules' outputs as the plain modules' (fp32, to rounding), through
    eleven fused kernels (fifteen on h200's channels-first triangle multiplication): the transition's hidden layer, the MSA row attention's
    projections and pair bias, the column attention's projections, each triangle
    attention's bias and projections (two each), the outer product mean's two projections
    (one), each triangle multiplication's output LayerNorm and projection (one each, the
    product read channels first) and on the channels-first form its input LayerNorm in
    the stacked projections (written channels first) and in the output gate."""
    calls = _fused_calls_matching_plain(device, channel_first, monkeypatch)
    # weight shapes: [n·c, c] transition; stacked [4·H·c, c_m] and [H, c_z] row attention;
    # stacked column attention; [H, c_z] and stacked [4·H·c, c_z] per triangle attention;
    # [2c, c_m] the outer product mean's stacked a and b; [c_z, c] each linear_z with the
    # output gate in its epilogue (on the channels-first form after the stacked [4c, c_z]
    # projections and the output gate's [c_z, c_z] logits, both of the raw z)
    trimul = [(32, 16), (16, 16), (16, 8)] if channel_first else [(16, 8)]
    assert calls == [(64, 16), (64, 32), (2, 16), (64, 32), (2, 16), (64, 16), (2, 16),
                     (64, 16), (8, 32), *trimul, *trimul]


def test_input_layer_norm_in_the_projection_gating_kernel(kern, device, monkeypatch):
    """`ln_projection_forward_kernel` with `trimul_projection_forward_kernel` (the
    channels-first triangle multiplication): each triangle multiplication's input
    LayerNorm, four projections and gating are one call of the projection-gating kernel
    with its LayerNorm instead of the stacked LayerNorm-projection; the eight modules'
    outputs as the plain ones (fp32, to rounding)."""
    calls = _fused_calls_matching_plain(device, True, monkeypatch, projection_kernel=True)
    trimul = [("norm", 16), (16, 16), (16, 8)]
    assert calls == [(64, 16), (64, 32), (2, 16), (64, 32), (2, 16), (64, 16), (2, 16),
                     (64, 16), (8, 32), *trimul, *trimul]


def _norm_in_gating_matches_layer_norm_kernel(device, dtype):
    # the projection-gating kernel with its LayerNorm on the raw stream against the same
    # kernel on the Triton LayerNorm's output (rounded to the compute dtype): the same bits
    from scalefold.kernels.layer_norm import TritonLayerNorm
    from scalefold.kernels.trimul_projection import project_gate_forward

    g = torch.Generator().manual_seed(7)
    z = (3 * torch.randn(2, 9, 9, 32, generator=g) + 1).to(device)  # raw stream, fp32
    ln = TritonLayerNorm(32).to(device)
    with torch.no_grad():
        ln.weight.copy_(torch.randn(32, generator=g) * 0.2 + 1)
        ln.bias.copy_(torch.randn(32, generator=g) * 0.2)
    w = torch.randn(4 * 8, 32, generator=g).to(device, dtype)
    b = torch.randn(4 * 8, generator=g).to(device, dtype)
    m = (torch.rand(2, 1, 81, generator=g) > 0.2).to(device, dtype)
    with torch.no_grad():
        zn = ln(z).to(dtype)
        want = project_gate_forward(zn, w, b, m, 8)
        got = project_gate_forward(z, w, b, m, 8, norm=ln)
    for x, y in zip(got, want, strict=True):
        assert x.dtype == dtype
        if device.type == "cuda":
            assert torch.equal(x, y)
        else:
            # The interpreter's tl.dot is numpy's matmul, whose BLAS kernel can sum a small
            # product in another order when an operand is a transposed view (tl.trans of
            # the normalised rows) rather than a loaded tile: 387 of 512 elements of an
            # 8 x 32 x 64 product differed in the last bits on an AVX-512 Xeon, where earlier
            # CI machines gave equal bits. So the CPU checks the values to fp32 rounding.
            torch.testing.assert_close(x, y, rtol=2e-6, atol=2e-6)


def test_projection_gating_kernel_normalises_as_the_layer_norm_kernel(kern, device):
    """fp32: the projection-gating kernel with its LayerNorm (`norm`) on the raw stream
    gives the bits it gives on the Triton LayerNorm's output (the same normalisation and
    rounding, then the same products)."""
    _norm_in_gating_matches_layer_norm_kernel(device, torch.float32)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bf16_layer_norm_inside_the_gating_kernel_gives_the_layer_norm_bits():
    """The same in bf16 (a GPU only: the interpreter's bf16 dot is wrong)."""
    _norm_in_gating_matches_layer_norm_kernel(torch.device("cuda"), torch.bfloat16)


@pytest.mark.parametrize("channel_first", [False, True], ids=["plain", "channel_first"])
def test_wide_projections_stay_layer_norm_then_matmul(kern, device, channel_first,
                                                      monkeypatch):
    """Projections wider than MAX_COLUMNS take the plain path, the module's other seams
    still fused: with 31 columns only the row attention's pair bias, the outer product
    mean's a and b and each triangle multiplication's linear_z (the channels-first form's
    input LayerNorm is not fused into its 32 stacked columns, so neither into the gate);
    the outputs as the plain modules'."""
    import scalefold.kernels.ln_linear as ln_linear

    monkeypatch.setattr(ln_linear, "MAX_COLUMNS", 31)
    calls = _fused_calls_matching_plain(device, channel_first, monkeypatch)
    assert calls == [(2, 16), (8, 32), (16, 8), (16, 8)]


def test_modules_with_gradients_take_the_plain_path(kern, device, monkeypatch):
    """With gradients the mixins change nothing: the stacked modules' bits, output and
    gradients, and no fused kernel."""
    import scalefold.kernels.ln_linear as ln_linear

    monkeypatch.setattr(ln_linear, "layer_norm_linear",
                        lambda *a, **kw: pytest.fail("fused kernel with gradients"))
    _, stacked, fused = _pair(device)
    want, got = _run(stacked, device), _run(fused, device)
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a, b)
    gw = torch.autograd.grad(sum(t.square().sum() for t in want), list(stacked.parameters()))
    gg = torch.autograd.grad(sum(t.square().sum() for t in got), list(fused.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(gg, gw, strict=True))


def test_apply_speedups_puts_the_mixins_on_every_seam():
    """`ln_projection_forward_kernel` in apply_speedups: every transition, MSA attention
    and triangle attention of the model gets its mixin, parameters and state dict kept;
    the field needs the stacked projections."""
    cfg = AlphaFoldConfig.tiny()
    model = AlphaFold(cfg)
    keys = list(model.state_dict())
    speed = dataclasses.replace(PRESETS["h200"].speed, ln_projection_forward_kernel=True,
                                compile_glue=False, compile_structure_module=False)
    apply_speedups(model, speed, "bf16", weight_casts=None if not speed.cached_weight_casts
                   else __import__("scalefold.kernels._autocast",
                                   fromlist=["WeightCasts"]).WeightCasts())
    assert list(model.state_dict()) == keys
    counts = {c: 0 for c in (NormFusedTransition, NormFusedMSAAttention,
                             NormFusedTriangleAttention, NormFusedOuterProductMean,
                             NormFusedTriangleMultiplication)}
    for m in model.modules():
        for c in counts:
            counts[c] += isinstance(m, c)
        if isinstance(m, (Transition, MSAColumnAttention, MSARowAttentionWithPairBias,
                          TriangleAttention, OuterProductMean, TriangleMultiplication)):
            assert isinstance(m, tuple(counts))
        if isinstance(m, Attention):  # the output projection's residual epilogue
            assert isinstance(m, FusedOutputAttention)
    assert all(counts.values())
    with pytest.raises(ValueError, match="attention_stacked_projections"):
        dataclasses.replace(speed, attention_stacked_projections=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (compiled Triton)")
def test_compiled_modules_break_around_the_kernel():
    """A transition and an outer product mean with their mixins compiled with dynamic
    shapes (as the evaluation copy's glue is): the eager fused values at two lengths, the
    kernel a graph break."""
    torch.backends.cuda.matmul.allow_tf32 = False
    t = swap_norm_projections(_perturbed(Transition(16, 4), 5)).cuda()
    compiled = torch.compile(copy.deepcopy(t), dynamic=True)
    for n in (32, 48):
        x = torch.randn(1, n, n, 16, device="cuda")
        with torch.no_grad():
            assert rel(compiled(x), t(x)) < 1e-6
    opm = swap_norm_projections(_perturbed(OuterProductMean(32, 16, 4, 1e-3), 6)).cuda()
    compiled = copy.deepcopy(opm)
    compiled.compile(dynamic=True)  # in place, as compile_glue: added_to runs compiled
    for n in (32, 48):
        m = torch.randn(1, 5, n, 32, device="cuda")
        mask = (torch.rand(1, 5, n, device="cuda") > 0.2).float()
        with torch.no_grad():
            assert rel(compiled(m, mask), opm(m, mask)) < 1e-6
            r = torch.randn(1, n, n, 16, device="cuda")
            assert rel(compiled.added_to(r, m, mask), r + opm(m, mask)) < 1e-6
    # the channels-first triangle multiplication compiled as the evaluation's glue: its
    # residual update (`added_to`) through the compiled forward, the fused kernel carrying
    # the gate and the residual
    tm = _perturbed(TriangleMultiplication(16, 8, outgoing=True), 9).cuda()
    swap_triangle_multiplication(tm, norm_kernel=True)
    tm = swap_norm_projections(tm)
    compiled = copy.deepcopy(tm)
    compiled.compile(dynamic=True)
    for n in (32, 48):
        z, r = torch.randn(1, n, n, 16, device="cuda"), torch.randn(1, n, n, 16, device="cuda")
        mask = (torch.rand(1, n, n, device="cuda") > 0.2).float()
        with torch.no_grad():
            assert rel(compiled.added_to(r, z, mask), tm.added_to(r, z, mask)) < 1e-6


def test_projection_gating_kernel_under_a_dynamic_compile(kern, device, monkeypatch):
    """The channels-first triangle multiplication with both fields, compiled in place with
    dynamic shapes as the evaluation's glue (aot_eager in the interpreter: the same ATen
    ops): its residual update through the compiled forward, the projection-gating kernel
    with its LayerNorm module a graph break that runs, the eager values at two lengths."""
    import scalefold.kernels.trimul_projection as tp

    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    launches = []
    untraced = tp._project_gate_untraced
    monkeypatch.setattr(tp, "_project_gate_untraced", torch.compiler.disable(
        lambda *a: launches.append(a[5]) or untraced(*a), recursive=True))  # a[5]: norm
    tm = _perturbed(TriangleMultiplication(16, 8, outgoing=True), 9).to(device)
    swap_triangle_multiplication(tm, norm_kernel=True, forward_projection_kernel=True)
    tm = swap_norm_projections(tm)
    compiled = copy.deepcopy(tm)
    compiled.compile(dynamic=True, backend="inductor" if device.type == "cuda" else "aot_eager")
    torch._dynamo.reset()
    for n in (32, 48):
        g = torch.Generator().manual_seed(n)
        z, r = (torch.randn(1, n, n, 16, generator=g).to(device) for _ in range(2))
        mask = (torch.rand(1, n, n, generator=g) > 0.2).float().to(device)
        with torch.no_grad():
            assert rel(compiled.added_to(r, z, mask), tm.added_to(r, z, mask)) < 1e-6
    # the compiled calls, through the break, with the module's input LayerNorm
    assert len(launches) == 2 and all(n is compiled.layer_norm_in for n in launches)
    torch._dynamo.reset()


def test_ln_linear_in_triton_interpreter():
    """CPU: the kernel tests above rerun in a process under TRITON_INTERPRET=1."""
    from tests.kernels.conftest import rerun_in_interpreter

    rerun_in_interpreter(__file__, "kernel_is or kernel_launch or kernel_reads or kernel_gates or kernel_adds or kernel_refuses or modules_with or wide_projections or adds_its_update or linear_epilogue or attentions_add or whole_model or projection_gating_kernel or heads_first")
