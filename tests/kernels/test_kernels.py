"""Parity of the Triton LayerNorm and attention kernels, the SDPA core and the swaps.

Small shapes run everywhere (CPU: Triton interpreter); the benchmark's shapes in bf16 run
on a GPU only. References are float64 PyTorch on the same (rounded) inputs; errors are
relative norms ||got - ref|| / ||ref||.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from scalefold.kernels import apply_kernels, keep_fp32
from scalefold.kernels.cores import SDPAAttentionCore, eager_attention
from scalefold.model import AlphaFold, AlphaFoldConfig
from scalefold.model.attention import AttentionCore
from scalefold.model.primitives import LayerNorm

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    assert torch.isfinite(a).all()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


@pytest.mark.parametrize("c,launch", [(16, None), (48, None), (384, None),
                                      (48, "few_programs"), (16, "wide"),
                                      (48, "many_partials"), (48, "stream"),
                                      (384, "stream"), (128, "stream_field")])
def test_layer_norm_matches_pytorch(kern, device, c, launch):
    """Default launch, and launches `bench layernorm` sweeps: several row blocks per
    backward program (partial dweight/dbias rows), many rows per program, and more
    partial rows than the summing kernel's block (several steps of its loop, the last
    one masked), and the streaming backward (the next block's loads ahead, the sums as
    tiles) over several blocks a program, the last one partial; `stream_field`: the
    launch of `SpeedConfig.layer_norm_bwd_stream`, over two blocks a program."""
    lns = kern.layer_norm
    # 600 rows: 600 partials of one row; 10,000 rows of 128: 625 blocks of 16 over 528
    # programs, so two blocks a program (313 programs)
    rows = {"many_partials": 300, "stream_field": 5000}.get(launch, 19)
    launch = {None: lns.DEFAULT_LAUNCH,
              "few_programs": lns.LayerNormLaunch(block_elems=256, bwd_block_elems=256,
                                                  bwd_programs=3, bwd_warps=8),
              "wide": lns.LayerNormLaunch(block_elems=16384, bwd_block_elems=16384,
                                          fwd_warps=8),
              "many_partials": lns.LayerNormLaunch(bwd_block_elems=64,
                                                   bwd_programs=4096),
              "stream": lns.LayerNormLaunch(bwd_block_elems=256, bwd_programs=3,
                                            bwd_stream=True),
              "stream_field": lns.STREAM_LAUNCH}[launch]
    g = torch.Generator().manual_seed(c)
    x = (torch.randn(2, rows, c, generator=g) * 3 + 1).to(device).requires_grad_()
    w = torch.randn(c, generator=g).to(device).requires_grad_()
    b = torch.randn(c, generator=g).to(device).requires_grad_()
    y = lns.layer_norm(x, w, b, 1e-5, launch=launch)
    dy = torch.randn_like(y)
    got = [y, *torch.autograd.grad(y, (x, w, b), dy)]
    x64, w64, b64 = (t.detach().double().requires_grad_() for t in (x, w, b))
    y64 = F.layer_norm(x64, (c,), w64, b64, 1e-5)
    ref = [y64, *torch.autograd.grad(y64, (x64, w64, b64), dy.double())]
    for a, r in zip(got, ref):
        assert rel(a, r) < 1e-5


@pytest.mark.parametrize("c,lead,m,progs", [(16, (2,), 37, None), (48, (1, 3), 20, None),
                                            (128, (1,), 70, None), (16, (5,), 300, 4)])
def test_layer_norm_matches_pytorch_channels_first(kern, device, c, lead, m, progs,
                                                   monkeypatch):
    """`layer_norm_channels_first`: x [*, C, M] normalised over C, returned [*, M, C]
    (`progs`: few backward programs, each over several blocks, some past the end)."""
    import scalefold.kernels.layer_norm_cf as lncf
    from scalefold.kernels.layer_norm_cf import layer_norm_channels_first

    if progs is not None:
        monkeypatch.setattr(lncf, "BWD_PROGRAMS", progs)

    g = torch.Generator().manual_seed(c + m)
    x = (torch.randn(*lead, c, m, generator=g) * 3 + 1).to(device).requires_grad_()
    w = torch.randn(c, generator=g).to(device).requires_grad_()
    b = torch.randn(c, generator=g).to(device).requires_grad_()
    y = layer_norm_channels_first(x, w, b, 1e-5)
    assert y.shape == (*lead, m, c) and y.is_contiguous()
    dy = torch.randn(y.shape, generator=g).to(device)
    got = [y, *torch.autograd.grad(y, (x, w, b), dy)]
    x64, w64, b64 = (t.detach().double().requires_grad_() for t in (x, w, b))
    y64 = F.layer_norm(x64.transpose(-1, -2), (c,), w64, b64, 1e-5)
    ref = [y64, *torch.autograd.grad(y64, (x64, w64, b64), dy.double())]
    assert got[1].stride() == x.stride()  # dx comes back channels-first
    for a, r in zip(got, ref):
        assert rel(a, r) < 1e-5


def test_layer_norm_matches_pytorch_channels_first_bf16_output(kern, device):
    from scalefold.kernels.layer_norm_cf import layer_norm_channels_first

    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 32, 40, generator=g).to(device, torch.bfloat16)
    w, b = torch.randn(32, generator=g).to(device), torch.randn(32, generator=g).to(device)
    ref = F.layer_norm(x.float().transpose(-1, -2), (32,), w, b, 1e-5)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        y_c = layer_norm_channels_first(x, w, b, 1e-5, "compute")
        y_f = layer_norm_channels_first(x, w, b, 1e-5, "fp32")
    assert y_c.dtype == torch.bfloat16 and y_f.dtype == torch.float32
    assert rel(y_f, ref) < 1e-5 and rel(y_c, ref) < 1e-2


@pytest.mark.parametrize("outgoing", [True, False])
@pytest.mark.parametrize("lead", [(1,), (1, 3)])
def test_trimul_norm_kernel_matches_row_layer_norm(kern, device, outgoing, lead):
    """Channels-first triangle multiplication with its output LayerNorm reading the
    product in place: the same output and gradients as with the row LayerNorm."""
    from scalefold.kernels.trimul import swap_triangle_multiplication
    from scalefold.model.pair import TriangleMultiplication

    results = []
    for norm_kernel in (False, True):
        g = torch.Generator().manual_seed(11)
        mod = TriangleMultiplication(16, 24, outgoing)
        for p in mod.parameters():  # "final"/"gating" inits are constant: randomise all
            torch.nn.init.normal_(p, std=0.3, generator=g)
        mod = apply_kernels(mod.to(device), attention="eager", layer_norm="triton")
        swap_triangle_multiplication(mod, norm_kernel=norm_kernel)
        z = torch.randn(*lead, 19, 19, 16, generator=g).to(device).requires_grad_()
        mask = (torch.rand(*lead, 19, 19, generator=g) > 0.2).float().to(device)
        out = mod(z, mask)
        dy = torch.randn(out.shape, generator=g).to(device)
        results.append([out, *torch.autograd.grad(out, [z, *mod.parameters()], dy)])
    for a, r in zip(results[1], results[0]):
        assert rel(a, r) < 1e-5


def _opm_run(projected: bool, device, lead, s, n, c_z, dtype=None, wrap=None):
    from scalefold.kernels.opm import ProjectedOuterProductMean, swap_outer_product_mean
    from scalefold.model.pair import OuterProductMean

    g = torch.Generator().manual_seed(5)
    mod = OuterProductMean(24, c_z, 16, 1e-3)
    for p in mod.parameters():  # the "final" init is zero: randomise all
        torch.nn.init.normal_(p, std=0.3, generator=g)
    mod = mod.to(device)
    if projected:
        swap_outer_product_mean(mod)
        assert type(mod) is ProjectedOuterProductMean
    if wrap is not None:
        wrap(mod)
    m = torch.randn(*lead, s, n, 24, generator=g).to(device).requires_grad_()
    mask = (torch.rand(*lead, s, n, generator=g) > 0.2).float().to(device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype is torch.bfloat16):
        out = mod(m, mask)
    dy = torch.randn(out.shape, generator=g).to(device)
    return [out, *torch.autograd.grad(out, [m, *mod.parameters()], dy)]


@pytest.mark.parametrize("lead,s,n,c_z", [((1,), 5, 19, 20), ((2,), 3, 70, 16)])
def test_opm_projection_kernel_matches_plain(kern, device, lead, s, n, c_z, monkeypatch):
    """The outer product mean projecting the product in its matmul's layout: the plain
    module's output and every gradient (fp32: IEEE dots), with j tiles past N, a c_z
    that is not a power of two, a leading batch, and dW chunks over several rows."""
    import scalefold.kernels.opm as opm

    monkeypatch.setattr(opm, "DW_PROGRAMS", 48)  # dW programs over several rows each
    if device.type == "cuda":
        monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    ref = _opm_run(False, device, lead, s, n, c_z)
    got = _opm_run(True, device, lead, s, n, c_z)
    for a, r in zip(got, ref, strict=True):
        assert rel(a, r) < 1e-5


def test_opm_projection_kernel_matches_plain_on_a_block_of_rows(kern, device, monkeypatch):
    """`outer_projection(a, b)` with a the block of columns one DAP rank holds (Ni < Nj):
    the kernels' rows are the (r, i) pairs, their j extent b's."""
    from scalefold.kernels.opm import swap_outer_product_mean
    from scalefold.model.pair import OuterProductMean

    if device.type == "cuda":
        monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    g = torch.Generator().manual_seed(6)
    plain = OuterProductMean(24, 20, 16, 1e-3)
    for p in plain.parameters():
        torch.nn.init.normal_(p, std=0.3, generator=g)
    plain = plain.to(device)
    projected = swap_outer_product_mean(copy.deepcopy(plain))
    a = torch.randn(2, 5, 7, 16, generator=g).to(device).requires_grad_()
    b = torch.randn(2, 5, 70, 16, generator=g).to(device).requires_grad_()
    dy = torch.randn(2, 7, 70, 20, generator=g).to(device)
    results = []
    for mod in (plain, projected):
        out = mod.outer_projection(a, b)
        results.append([out, *torch.autograd.grad(out, [a, b, *mod.linear_out.parameters()],
                                                   dy)])
    assert results[1][0].shape == (2, 7, 70, 20)
    for got, ref in zip(results[1], results[0], strict=True):
        assert rel(got, ref) < 1e-5


def test_opm_projection_kernel_under_recompute(kern, device, monkeypatch):
    """The swap composes with `recompute_outer_product_mean` (applied after it), and
    refuses to come second."""
    from scalefold.kernels import recompute_outer_product_mean
    from scalefold.kernels.opm import swap_outer_product_mean
    from scalefold.model.pair import OuterProductMean

    if device.type == "cuda":
        monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    ref = _opm_run(False, device, (1,), 4, 33, 32)
    got = _opm_run(True, device, (1,), 4, 33, 32, wrap=recompute_outer_product_mean)
    for a, r in zip(got, ref, strict=True):
        assert rel(a, r) < 1e-5
    late = recompute_outer_product_mean(OuterProductMean(8, 8, 16, 1e-3))
    with pytest.raises(ValueError, match="before"):
        swap_outer_product_mean(late)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (bf16 tl.dot "
                    "gives wrong results in the Triton interpreter)")
def test_opm_projection_kernel_bf16(device):
    ref = _opm_run(False, device, (1,), 4, 33, 32, torch.bfloat16)
    got = _opm_run(True, device, (1,), 4, 33, 32, torch.bfloat16)
    assert got[0].dtype == ref[0].dtype == torch.bfloat16
    for a, r in zip(got, ref, strict=True):
        assert rel(a, r) < 2e-2


# (leading dims, heads, Q, K, c, [(bias shape, requires grad)]) as the model calls it
ATTN_CASES = {
    "msa_row": ((1, 3), 2, 20, 20, 4, [((1, 3, 1, 1, 20), False), ((1, 1, 2, 20, 20), True)]),
    "msa_col": ((1, 5), 2, 17, 17, 8, [((1, 5, 1, 1, 17), False)]),
    "tri_template": ((1, 2, 17), 2, 17, 17, 4,
                     [((1, 1, 17, 1, 1, 17), False), ((1, 2, 1, 2, 17, 17), True)]),
    "cross_two_grad_biases": ((2,), 2, 17, 33, 8, [((2, 1, 1, 33), True), ((2, 2, 17, 33), True)]),
    # K a multiple of the key block (16 rows of 32 keys): the forward's unmasked path
    "even_keys": ((1, 2), 2, 16, 32, 4, [((1, 2, 1, 1, 32), False), ((1, 1, 2, 16, 32), True)]),
}


def _attn_inputs(lead, h, ql, kl, c, biases, device, dtype, seed):
    g = torch.Generator().manual_seed(seed)

    def rnd(*s, scale=1.0):
        return (torch.randn(*s, generator=g) * scale).to(device, dtype)

    q = rnd(*lead, h, ql, c, scale=c**-0.5).requires_grad_()
    k = rnd(*lead, h, kl, c).requires_grad_()
    v = rnd(*lead, h, kl, c).requires_grad_()
    bs = [rnd(*shape).requires_grad_(grad) for shape, grad in biases]
    # A masked key (AlphaFold's -1e9 mask bias) in the first bias
    if bs and not biases[0][1]:
        bs[0] = bs[0].detach().clone()
        bs[0][..., 0] = -1e9
    return q, k, v, bs


def _check_attention(fn, case, device, dtype, tol, seed=0, scale=1.0):
    lead, h, ql, kl, c, biases = case
    q, k, v, bs = _attn_inputs(lead, h, ql, kl, c, biases, device, dtype, seed)
    o = fn(q, k, v, bs)
    do = torch.randn_like(o)
    leaves = [q, k, v, *[b for b in bs if b.requires_grad]]
    got = [o, *torch.autograd.grad(o, leaves, do)]
    leaves64 = [t.detach().double().requires_grad_(t.requires_grad) for t in (q, k, v, *bs)]
    o64 = eager_attention(*leaves64[:3], leaves64[3:], scale=scale)
    ref = [o64, *torch.autograd.grad(
        o64, [t for t in leaves64 if t.requires_grad], do.double())]
    errs = [rel(a, r) for a, r in zip(got, ref)]
    assert max(errs) < tol, errs


@pytest.mark.parametrize("name", sorted(ATTN_CASES))
def test_flash_attention_matches_eager(kern, device, name):
    _check_attention(kern.attention.flash_attention, ATTN_CASES[name], device, torch.float32,
                     tol=2e-3 if device.type == "cuda" else 1e-5)


def _attention_modules():
    from scalefold.model.msa import MSAColumnAttention, MSARowAttentionWithPairBias
    from scalefold.model.pair import TriangleAttention

    return {
        "msa_row": lambda: MSARowAttentionWithPairBias(16, 8, 4, 2, 1e9),
        "msa_col": lambda: MSAColumnAttention(16, 4, 2, 1e9),
        "tri_start": lambda: TriangleAttention(8, 4, 2, 1e9, starting=True),
        "tri_end": lambda: TriangleAttention(8, 4, 2, 1e9, starting=False),
    }


@pytest.mark.parametrize("name", ["msa_row", "msa_col", "tri_start", "tri_end"])
def test_attention_modules_with_flash_core_match_eager(kern, device, name):
    """The model's own call sites (strided head-split views, permuted pair biases,
    column-wise attention without transposes) through the flash kernels: output and
    every gradient (inputs and parameters) as with the eager core, in float32."""
    from scalefold.kernels.cores import TritonAttentionCore

    g = torch.Generator().manual_seed(3)
    s, n = 5, 18
    m = torch.randn(1, s, n, 16, generator=g)
    z = torch.randn(1, n, n, 8, generator=g)
    mask_m = (torch.rand(1, s, n, generator=g) > 0.2).float()
    mask_z = (torch.rand(1, n, n, generator=g) > 0.2).float()
    results = []
    for flash in (False, True):
        torch.manual_seed(0)
        mod = _attention_modules()[name]()
        for p in mod.parameters():  # the "final" init zeroes the output projection
            torch.nn.init.normal_(p, std=0.3, generator=torch.Generator().manual_seed(p.numel()))
        mod = mod.to(device)
        if flash:
            mod.mha.core = TritonAttentionCore()
        mi, zi = m.to(device).requires_grad_(), z.to(device).requires_grad_()
        if name == "msa_row":
            out = mod(mi, zi, mask_m.to(device))
        elif name == "msa_col":
            out = mod(mi, mask_m.to(device))
        else:
            out = mod(zi, mask_z.to(device))
        leaves = [mi, zi, *mod.parameters()]
        grads = torch.autograd.grad(out, leaves, torch.ones_like(out), allow_unused=True)
        results.append([out, *[gr for gr in grads if gr is not None]])
    tol = 2e-3 if device.type == "cuda" else 1e-5
    # A floor scaled to the largest gradient: the pair-bias LayerNorm's bias gradient is
    # ~0 by construction (softmax ignores a constant added to a row of logits), a sum of
    # O(1) terms that cancel, so only its rounding noise is left to compare.
    floor = 1e-2 * max(float(b.norm()) for b in results[0])
    errs = [float((a - b).norm() / (b.norm() + floor)) for a, b in zip(results[1], results[0])]
    assert len(results[0]) == len(results[1]) and max(errs) < tol, " ".join(f"{e:.1e}" for e in errs)


LAUNCH_SETS = {
    "wide_fwd": dict(fwd=(128, 64, 8, 2), bwd_kv=(32, 64, 4, 2), bwd_q=(128, 64, 8, 2)),
    "narrow_k": dict(fwd=(64, 32, 4, 3), bwd_kv=(64, 128, 4, 1), bwd_q=(64, 128, 4, 1)),
    "dq_kernel": dict(dq_kernel=True, bwd_dq=(64, 32, 4, 1)),
    # the forward over two key blocks (K = 40, blocks of 32) with the stored-dS backward
    "two_key_blocks": dict(fwd=(64, 32, 4, 3), dq_kernel=True, store_ds=True),
}


@pytest.mark.parametrize("name", sorted(LAUNCH_SETS))
def test_flash_attention_other_launches_match_eager(kern, device, name):
    """Launch configurations other than the default compute the same attention (tiles are
    clamped to the padded lengths at these small shapes, 40 -> 64)."""
    a = kern.attention
    cfg = a.FlashConfig(**{k: a.Launch(*v) if isinstance(v, tuple) else v
                           for k, v in LAUNCH_SETS[name].items()})
    case = ((1, 3), 2, 40, 40, 8, [((1, 3, 1, 1, 40), False), ((1, 1, 2, 40, 40), True)])
    _check_attention(lambda q, k, v, bs: a.flash_attention(q, k, v, bs, cfg),
                     case, device, torch.float32, tol=2e-3 if device.type == "cuda" else 1e-5)


@pytest.mark.parametrize("name", sorted(ATTN_CASES))
def test_flash_attention_dq_kernel_matches_eager(kern, device, name):
    """The separate dq kernel, with and without bias gradients (then it runs alone)."""
    cfg = kern.attention.FlashConfig(dq_kernel=True)
    _check_attention(lambda q, k, v, bs: kern.attention.flash_attention(q, k, v, bs, cfg),
                     ATTN_CASES[name], device, torch.float32,
                     tol=2e-3 if device.type == "cuda" else 1e-5)


@pytest.mark.parametrize("name", sorted(ATTN_CASES))
def test_flash_attention_stored_ds_matches_eager(kern, device, name):
    """dS stored by the dk/dv kernel, dq and the bias gradients read from it: biases
    broadcast over the looped rows (MSA row, triangle), over none (two gradient biases of
    their own shapes), and no bias gradient at all (MSA column: the kernels as before)."""
    cfg = kern.attention.FlashConfig(dq_kernel=True, store_ds=True)
    _check_attention(lambda q, k, v, bs: kern.attention.flash_attention(q, k, v, bs, cfg),
                     ATTN_CASES[name], device, torch.float32,
                     tol=2e-3 if device.type == "cuda" else 1e-5)


@pytest.mark.parametrize("name", sorted(ATTN_CASES))
@pytest.mark.parametrize("form", ["atomic", "dqk", "ds", "fused"])
def test_flash_attention_row_bias_loads_bit_identical(kern, device, name, form):
    """A mask bias broadcast over queries is read as one row per key block: the same
    values added in the same order as the full-tile read, so every output and gradient
    is bit-identical, in each backward form (and with the fused logits, where the row
    can be the first term of the sum)."""
    a = kern.attention
    base = {"atomic": a.FlashConfig(), "dqk": a.FlashConfig(dq_kernel=True),
            "ds": a.FlashConfig(dq_kernel=True, store_ds=True),
            "fused": a.FlashConfig(dq_kernel=True, store_ds=True, fused_logits=True)}[form]
    lead, h, ql, kl, c, biases = ATTN_CASES[name]
    q, k, v, bs = _attn_inputs(lead, h, ql, kl, c, biases, device, torch.float32, seed=1)
    leaves = [q, k, v, *[b for b in bs if b.requires_grad]]
    runs = []
    for row_bias in (True, False):
        cfg = dataclasses.replace(base, row_bias=row_bias)
        o = a.flash_attention(q, k, v, bs, cfg)
        runs.append([o, *torch.autograd.grad(o, leaves, torch.ones_like(o))])
    assert all(torch.equal(x, y) for x, y in zip(*runs))
    # the cases with a query-broadcast bias take the row path (the mask of msa_row: yes)
    full = (*lead, h, ql, kl)
    rows = [a._row_bias(base, b.expand(full), (0, 0, 0, b.expand(full).stride(-2), 0))
            for b in bs]
    assert any(rows) == any(len(shape) >= 2 and shape[-2] == 1 for shape, _ in biases)


@pytest.mark.parametrize("name", sorted(ATTN_CASES))
@pytest.mark.parametrize("fused", [False, True], ids=["plain_logits", "fused_logits"])
def test_flash_attention_forward_only_matches(kern, device, name, fused):
    """Without gradients (recycling iterations, evaluation) the forward kernel skips the
    row log-sum-exp and the autograd node: the same output bits."""
    a = kern.attention
    cfg = a.FlashConfig(fused_logits=fused)
    lead, h, ql, kl, c, biases = ATTN_CASES[name]
    q, k, v, bs = _attn_inputs(lead, h, ql, kl, c, biases, device, torch.float32, seed=2)
    with_grad = a.flash_attention(q, k, v, bs, cfg)
    assert with_grad.grad_fn is not None
    with torch.no_grad():
        without = a.flash_attention(q, k, v, bs, cfg)
    assert without.grad_fn is None and torch.equal(with_grad.detach(), without)


def test_flash_attention_untraced_in_a_compiled_region(kern, device):
    """Traced by torch.compile with dynamic shapes (a whole block compiled around it),
    the attention is a graph break: Dynamo cannot trace the launch, whose constexprs
    depend on the lengths. The code around it compiles, the kernel runs as eager code
    with the uncompiled call's bits, and a second length compiles nothing new."""
    from torch._dynamo.utils import counters

    a = kern.attention

    def block(q, k, v, bias, r):  # a residual update around the attention
        o = a.flash_attention(q, k, v, [bias])
        return r + 2.0 * o

    torch._dynamo.reset()
    compiled = torch.compile(block, dynamic=True, backend="aot_eager")
    counters.clear()
    graphs = []
    for n in (40, 56):
        q, k, v, bs = _attn_inputs((3,), 2, n, n, 16, [((3, 1, 1, n), False)], device,
                                   torch.float32, seed=n)
        r = torch.randn(3, 2, n, 16, device=device)
        with torch.no_grad():
            got, want = compiled(q, k, v, bs[0], r), block(q, k, v, bs[0], r)
        assert torch.equal(got, want)
        graphs.append(counters["stats"]["unique_graphs"])
    assert sum(counters["graph_break"].values()) >= 1
    assert graphs[0] >= 1 and graphs[1] == graphs[0], graphs
    torch._dynamo.reset()


@pytest.mark.parametrize("name", sorted(ATTN_CASES))
@pytest.mark.parametrize("form", ["atomic_dq", "separate_dq", "saved_ds"])
@pytest.mark.parametrize("fused,delta", [(True, False), (True, True), (False, True)],
                         ids=["fused", "fused_own_delta", "own_delta"])
def test_flash_attention_fused_logits_matches_eager(kern, device, name, form, fused, delta):
    """`fused_logits` (the biases summed first and q kᵀ accumulated onto them, exp2 of a
    fused multiply-add, the rescaled output as P·V's accumulator) and `precomputed_delta`
    (rowsum(dO·O) from a kernel of its own, loaded by the backward kernels): the same
    attention, output and every gradient, in each backward form; not the same bits as
    the plain kernels (the sums round in another order)."""
    a = kern.attention
    cfg = a.FlashConfig(fused_logits=fused, precomputed_delta=delta, **BACKWARD_FORMS[form])
    tol = 2e-3 if device.type == "cuda" else 1e-5
    _check_attention(lambda q, k, v, bs: a.flash_attention(q, k, v, bs, cfg),
                     ATTN_CASES[name], device, torch.float32, tol=tol)
    if form == "saved_ds":
        lead, h, ql, kl, c, biases = ATTN_CASES[name]
        q, k, v, bs = _attn_inputs(lead, h, ql, kl, c, biases, device, torch.float32, seed=6)
        with torch.no_grad():
            fused = a.flash_attention(q, k, v, bs, cfg)
            plain = a.flash_attention(q, k, v, bs)
        assert rel(fused, plain) < tol


# 16 × 16 tiles: the cases' lengths (16 to 40) have full blocks and, but for 16 and 32,
# a partial last block in both loops.
_SMALL_TILES = dict(fwd=(16, 16, 4, 2), bwd_kv=(16, 16, 4, 1), bwd_dq=(16, 16, 4, 1))


# Head dimensions that fill their blocks (16: the loads lose the head-dimension mask
# too), beside ATTN_CASES' 4 and 8.
_FULL_HEAD_CASES = {
    "msa_row_c16": ((1, 3), 2, 20, 20, 16, [((1, 3, 1, 1, 20), False),
                                             ((1, 1, 2, 20, 20), True)]),
    "cross_c16": ((2,), 2, 17, 33, 16, [((2, 1, 1, 33), False), ((2, 2, 17, 33), True)]),
}


@pytest.mark.parametrize("name", sorted(ATTN_CASES) + sorted(_FULL_HEAD_CASES))
@pytest.mark.parametrize("tiles", ["default", "small"])
@pytest.mark.parametrize("form", ["separate_dq", "saved_ds_fused_delta"])
def test_flash_attention_unmasked_loads_bit_identical(kern, device, name, tiles, form):
    """`unmasked_loads`: the loops over full blocks load without bounds and the partial
    last block runs after them with bounds: the same operations in the same order, so in
    the interpreter every output and gradient is bit-identical. Compiled for a GPU the two
    forms contract and schedule differently (sm90, 2026-12-05: a few values differ), so
    there they agree within the kernels' TF32 tolerance."""
    a = kern.attention
    launches = {k: a.Launch(*v) for k, v in _SMALL_TILES.items()} if tiles == "small" else {}
    extra = (dict(store_ds=True, fused_logits=True, precomputed_delta=True)
             if form == "saved_ds_fused_delta" else {})
    base = a.FlashConfig(dq_kernel=True, **extra, **launches)
    lead, h, ql, kl, c, biases = {**ATTN_CASES, **_FULL_HEAD_CASES}[name]
    q, k, v, bs = _attn_inputs(lead, h, ql, kl, c, biases, device, torch.float32, seed=8)
    do = torch.randn(*lead, h, ql, c, generator=torch.Generator().manual_seed(9)).to(device)
    leaves = [q, k, v, *[b for b in bs if b.requires_grad]]
    runs = []
    for unmasked in (False, True):
        cfg = dataclasses.replace(base, unmasked_loads=unmasked)
        o = a.flash_attention(q, k, v, bs, cfg)
        runs.append([o.detach(), *torch.autograd.grad(o, leaves, do)])
        with torch.no_grad():
            runs[-1].append(a.flash_attention(q, k, v, bs, cfg))
    for got, want in zip(*runs, strict=True):
        if device.type == "cuda":
            assert rel(got, want) < 2e-3
        else:
            assert torch.equal(got, want)


@pytest.mark.parametrize("name", sorted(ATTN_CASES) + sorted(_FULL_HEAD_CASES))
@pytest.mark.parametrize("tiles", ["default", "small"])
@pytest.mark.parametrize("unmasked", [False, True], ids=["bounded", "unmasked"])
def test_flash_attention_bias_mma_same_forward(kern, device, name, tiles, unmasked,
                                               monkeypatch):
    """`bias_mma`: a 16-bit bias tile enters the forward's logits as identity · tile (an
    MMA operand) instead of a loaded tile: the same values, so in the interpreter the
    same output bits (16-bit operands: bf16 as under autocast on a GPU, fp16 in the
    interpreter, whose bf16 loads are wrong whatever the form; the masks' rows in fp32),
    with and without a gate. On a GPU the compiler may fold a row into the MMA's fp32
    accumulator, so there the outputs agree within bf16 rounding. Rows and fp32 tiles
    keep their loads."""
    a = kern.attention
    launches = {k: a.Launch(*v) for k, v in _SMALL_TILES.items()} if tiles == "small" else {}
    base = a.FlashConfig(fused_logits=True, unmasked_loads=unmasked, **launches)
    lead, h, ql, kl, c, biases = {**ATTN_CASES, **_FULL_HEAD_CASES}[name]
    half = torch.bfloat16 if device.type == "cuda" else torch.float16
    q, k, v, bs = _attn_inputs(lead, h, ql, kl, c, biases, device, half, seed=12)
    # a mask broadcast over queries stays fp32, as the model's masks are
    bs = [b.float() if len(shape) >= 2 and shape[-2] == 1 else b
          for b, (shape, _) in zip(bs, biases, strict=True)]
    gate = torch.randn(*lead, h, ql, c, generator=torch.Generator().manual_seed(13))
    gate = gate.to(device, half)
    taken = []
    plan = a._bias_as_mma_operand

    def spy(cfg, b, row, head_dim):
        taken.append(plan(cfg, b, row, head_dim))
        return taken[-1]

    monkeypatch.setattr(a, "_bias_as_mma_operand", spy)
    monkeypatch.setattr(a, "BIAS_MMA_MIN_HEAD_DIM", 1)  # the cases' heads are 4 to 16 wide
    outs = []
    with torch.no_grad():
        for on in (False, True):
            cfg = dataclasses.replace(base, bias_mma=on)
            outs.append((a.flash_attention(q, k, v, bs, cfg),
                         a.gated_flash_attention(q, k, v, bs, gate, cfg)))
    # each 16-bit tile takes the MMA in both calls; a row or an fp32 bias never does
    tile_count = sum(1 for b in bs if b.dtype == half and b.shape[-2] != 1)
    assert sum(taken) == 2 * tile_count and (tile_count >= 1 or name == "msa_col")
    for got, want in zip(outs[1], outs[0], strict=True):
        if device.type == "cuda":
            assert rel(got.float(), want.float()) < 1e-2
        else:
            assert torch.equal(got, want)
    # and the attention itself (fp64 of the same 16-bit inputs)
    want = eager_attention(*(t.double() for t in (q, k, v)), [b.double() for b in bs])
    assert rel(outs[1][0].double(), want) < 1e-2


# (lead, H, Q, K, c, bias layout): a contiguous tile (as the folded triangle bias) with
# and without a key-mask row, one per leading index or broadcast over them, partial and
# full blocks; "permuted": keys not contiguous (no descriptor, the other loads).
_TMA_CASES = {
    "folded_tile": ((1, 3), 2, 20, 40, 8, "tile"),
    "row_and_tile": ((1, 3), 2, 20, 40, 8, "row+tile"),
    "per_lead_tile": ((2, 3), 2, 24, 48, 16, "lead_tile"),
    "full_blocks": ((1, 2), 2, 96, 96, 16, "tile"),
    "permuted": ((1, 3), 2, 20, 40, 8, "permuted"),
}


@pytest.mark.parametrize("name", sorted(_TMA_CASES))
@pytest.mark.parametrize("tiles", ["default", "small"])
@pytest.mark.parametrize("unmasked", [False, True], ids=["bounded", "unmasked"])
def test_flash_attention_bias_tma_same_forward(kern, device, name, tiles, unmasked,
                                               monkeypatch):
    """`bias_tma`: a 16-bit bias tile with contiguous keys and rows K apart is loaded
    through a TMA tensor descriptor (rows past Q read the next head's rows or zeros,
    never stored): the same values as the plain loads, so in the interpreter the same
    output bits (fp16 there, bf16 on a GPU), with and without a gate, and it takes
    precedence over bias_mma. A tile whose keys are not contiguous keeps its loads."""
    a = kern.attention
    launches = {k: a.Launch(*v) for k, v in _SMALL_TILES.items()} if tiles == "small" else {}
    base = a.FlashConfig(fused_logits=True, unmasked_loads=unmasked, **launches)
    lead, h, ql, kl, c, form = _TMA_CASES[name]
    half = torch.bfloat16 if device.type == "cuda" else torch.float16
    g = torch.Generator().manual_seed(15)

    def rnd(*shape):
        return torch.randn(*shape, generator=g).to(device, half)

    q, k, v = rnd(*lead, h, ql, c) * c**-0.5, rnd(*lead, h, kl, c), rnd(*lead, h, kl, c)
    tile_lead = (lead[0], *[1] * (len(lead) - 1)) if form == "lead_tile" else (1,) * len(lead)
    tile = (rnd(*lead[:-1], kl, kl, h)[..., :ql, :, :].permute(0, 3, 1, 2).unsqueeze(1)
            if form == "permuted" else rnd(*tile_lead, h, ql, kl))  # [*, H, Q, K]
    bs = [tile]
    if form == "row+tile":
        keys = torch.zeros(*lead, 1, 1, kl, device=device)
        keys[..., -5:] = -1e9
        bs = [keys, tile]
    gate = rnd(*lead, h, ql, c)
    made = []
    plan = a._bias_descriptor

    def spy(*args):
        made.append(plan(*args))
        return made[-1]

    monkeypatch.setattr(a, "_bias_descriptor", spy)
    outs = []
    with torch.no_grad():
        for on in (False, True):
            cfg = dataclasses.replace(base, bias_tma=on, bias_mma=on)
            outs.append((a.flash_attention(q, k, v, bs, cfg),
                         a.gated_flash_attention(q, k, v, bs, gate, cfg)))
    taken = sum(d is not None for d in made)
    tma_capable = a.TensorDescriptor is not None and (
        device.type != "cuda" or torch.cuda.get_device_capability(device)[0] >= 9)
    assert taken == (0 if form == "permuted" or not tma_capable else 2)
    for got, want in zip(outs[1], outs[0], strict=True):
        if device.type == "cuda":
            assert rel(got.float(), want.float()) < 1e-2
        else:
            assert torch.equal(got, want)
    want = eager_attention(*(t.double() for t in (q, k, v)), [b.double() for b in bs])
    assert rel(outs[1][0].double(), want) < 1e-2


@pytest.mark.parametrize("name", ["msa_row_c16", "cross_c16", "even_keys"])
@pytest.mark.parametrize("mma", [False, True], ids=["loaded", "bias_mma"])
def test_flash_attention_pipelined_bias_loads_same_forward(kern, device, name, mma,
                                                           monkeypatch):
    """`pipelined_bias_loads`: the forward's loop with its stages given to Triton's
    pipeliner (which then loads the mask rows and bias tiles ahead too) computes the same
    values as the plain loads: the same bits in the interpreter (16-bit operands, fp32
    masks), within bf16 rounding on a GPU. It takes precedence over bias_mma: the tile is
    loaded, not an MMA operand."""
    a = kern.attention
    monkeypatch.setattr(a, "BIAS_MMA_MIN_HEAD_DIM", 1)
    launches = _record_launch_kwargs(monkeypatch, a, "_attn_fwd",
                                     lambda kw: (kw["B0_MMA"] or kw["B1_MMA"], kw["LOOP_STAGES"]))
    base = a.FlashConfig(fused_logits=True, unmasked_loads=True, bias_mma=mma)
    lead, h, ql, kl, c, biases = {**ATTN_CASES, **_FULL_HEAD_CASES}[name]
    half = torch.bfloat16 if device.type == "cuda" else torch.float16
    q, k, v, bs = _attn_inputs(lead, h, ql, kl, c, biases, device, half, seed=16)
    bs = [b.float() if len(shape) >= 2 and shape[-2] == 1 else b
          for b, (shape, _) in zip(bs, biases, strict=True)]
    with torch.no_grad():
        got = a.flash_attention(q, k, v, bs, dataclasses.replace(base, pipelined_bias_loads=True))
        want = a.flash_attention(q, k, v, bs, dataclasses.replace(base, bias_mma=False))
    stages = base.fwd.stages
    assert launches == [(False, stages), (False, None)]
    if device.type == "cuda":
        assert rel(got.float(), want.float()) < 1e-2
    else:
        assert torch.equal(got, want)


@pytest.mark.parametrize("name", ["msa_row", "tri_template", "cross_two_grad_biases"])
@pytest.mark.parametrize("store_ds", [False, True], ids=["recompute", "store_ds"])
def test_flash_attention_bwd_pipelined_loads_same_gradients(kern, device, name, store_ds,
                                                            monkeypatch):
    """`bwd_pipelined_loads`: the dk/dv kernel's loop with 2 stages given to Triton's
    pipeliner computes the same gradients (q, k, v and the biases'): the same bits in the
    interpreter, within fp32 rounding on a GPU; the launch asks for the stages."""
    a = kern.attention
    base = a.FlashConfig(fused_logits=True, unmasked_loads=True, precomputed_delta=True,
                         store_ds=store_ds)
    stages = _record_launch_kwargs(monkeypatch, a, "_attn_bwd_kv",
                                   lambda kw: (kw["Q_LOOP_STAGES"], kw["num_stages"]))
    lead, h, ql, kl, c, biases = ATTN_CASES[name]
    q, k, v, bs = _attn_inputs(lead, h, ql, kl, c, biases, device, torch.float32, seed=17)
    do = torch.randn(*lead, h, ql, c, generator=torch.Generator().manual_seed(18)).to(device)
    leaves = [q, k, v, *[b for b in bs if b.requires_grad]]
    runs = []
    for on in (False, True):
        o = a.flash_attention(q, k, v, bs, dataclasses.replace(base, bwd_pipelined_loads=on))
        runs.append(torch.autograd.grad(o, leaves, do))
    assert stages == [(None, base.bwd_kv.stages), (2, 2)]
    for got, want in zip(runs[1], runs[0], strict=True):
        if device.type == "cuda":
            assert rel(got, want) < 1e-5
        else:
            assert torch.equal(got, want)


def _record_launches(monkeypatch, module, name: str) -> list:
    """The grids `module.name` (a Triton kernel) is launched with, from now on."""
    grids, kernel = [], getattr(module, name)

    class Spy:
        def __getitem__(self, grid):
            grids.append(grid)
            return kernel[grid]

    monkeypatch.setattr(module, name, Spy())
    return grids


def _record_launch_kwargs(monkeypatch, module, name: str, pick) -> list:
    """`pick(kwargs)` of every launch of `module.name` (a Triton kernel) from now on."""
    seen, kernel = [], getattr(module, name)

    class Spy:
        def __getitem__(self, grid):
            def launch(*args, **kw):
                seen.append(pick(kw))
                return kernel[grid](*args, **kw)
            return launch

    monkeypatch.setattr(module, name, Spy())
    return seen


def test_flash_attention_half_key_blocks(kern, device, monkeypatch):
    """`fwd_half_key_block`: keys an odd multiple of 32 up to the limit run the forward
    with 32-key blocks (every block full); other key counts, other launches and configs
    without the switch keep the 64-key block. The attention is the same within fp32
    rounding (the online softmax visits the keys in other blocks)."""
    a = kern.attention
    on = a.FlashConfig(fused_logits=True, unmasked_loads=True, fwd_half_key_block=True)
    off = dataclasses.replace(on, fwd_half_key_block=False)
    assert [a._forward_launch(on, kl).block_k for kl in (32, 64, 96, 128, 352, 416)] == [
        32, 64, 32, 64, 32, 64]
    assert a._forward_launch(off, 96).block_k == 64
    assert a._forward_launch(dataclasses.replace(on, fwd=a.Launch(64, 128, 4, 3)),
                             96).block_k == 128
    keys = _record_launch_kwargs(monkeypatch, a, "_attn_fwd", lambda kw: kw["BK"])
    case = ((1, 2), 2, 20, 96, 8, [((1, 2, 1, 1, 96), False), ((1, 1, 2, 20, 96), False)])
    lead, h, ql, kl, c, biases = case
    q, k, v, bs = _attn_inputs(lead, h, ql, kl, c, biases, device, torch.float32, seed=14)
    with torch.no_grad():
        got, want = (a.flash_attention(q, k, v, bs, cfg) for cfg in (on, off))
    assert keys == [32, 64]
    assert rel(got, want) < (2e-3 if device.type == "cuda" else 1e-6)
    ref = eager_attention(*(t.double() for t in (q, k, v)), [b.double() for b in bs])
    assert rel(got.double(), ref) < (2e-3 if device.type == "cuda" else 1e-5)


@pytest.mark.parametrize("kl,real", [(96, 90), (288, 275), (352, 340)])
@pytest.mark.parametrize("form", ["folded_tile", "mask_row_and_tile", "extra_msa_rows"])
def test_flash_attention_32_key_forward_at_evaluation_shapes_bf16(kern, device, kl, real, form):
    """The evaluation's attention forward (bf16, the bias tile as an MMA operand at c = 32)
    at padded lengths that take 32-key blocks, with the padded keys masked by -1e9 as the
    model masks them: the triangle attentions' folded tile, the MSA row attention's mask
    row and pair tile, or the extra-MSA row attention's (c = 8: the tile loaded, not an
    MMA operand; its last sequence padding, every key masked). Finite, and as close to
    float64 as the 64-key blocks (with them 3pwp_A, 275 residues in the 288 bucket,
    scored exactly 0 on an H100)."""
    a = kern.attention
    off = a.FlashConfig(fused_logits=True, unmasked_loads=True, bias_mma=True)
    on = dataclasses.replace(off, fwd_half_key_block=True)
    assert a._forward_launch(on, kl).block_k == 32
    g = torch.Generator().manual_seed(kl)
    c = 8 if form == "extra_msa_rows" else 32
    q, k, v = (torch.randn(1, 3, 4, kl, c, generator=g).to(device, torch.bfloat16)
               for _ in range(3))
    keys = torch.zeros(1, 3, 1, 1, kl)
    keys[..., real:] = -1e9  # inf · (mask - 1), inf = 1e9
    if form == "extra_msa_rows":
        keys[:, -1] = -1e9
    tile = torch.randn(1, 1, 4, kl, kl, generator=g)
    if form == "folded_tile":
        biases = [(tile + keys[:, :1]).to(device, torch.bfloat16).contiguous()]
    else:
        biases = [keys.to(device), tile.to(device, torch.bfloat16).contiguous()]
    ref = eager_attention(*(t.double() for t in (q, k, v)), [b.double() for b in biases])
    with torch.no_grad():
        got, base = (a.flash_attention(q, k, v, biases, cfg) for cfg in (on, off))
    assert torch.isfinite(got).all()
    assert rel(got, ref) < max(2 * rel(base, ref), 1e-2)


@pytest.mark.parametrize("name", sorted(ATTN_CASES) + sorted(_FULL_HEAD_CASES))
def test_flash_attention_dq_from_stored_ds_kernel(kern, device, name, monkeypatch):
    """`ds_dq_kernel`: with the stored dS, dq from one kernel that reads k and writes dq
    through their strides: the same attention gradients as eager fp64, dq within fp32
    rounding of the batched-matmul path (the sum over keys in another order), everything
    else bit-identical; the kernel runs exactly where a bias needs a gradient."""
    a = kern.attention
    launches = _record_launches(monkeypatch, a, "_attn_dq_from_ds")
    base = a.FlashConfig(dq_kernel=True, store_ds=True, fused_logits=True,
                         precomputed_delta=True)
    cfg = dataclasses.replace(base, ds_dq_kernel=True)
    case = {**ATTN_CASES, **_FULL_HEAD_CASES}[name]
    tol = 2e-3 if device.type == "cuda" else 1e-5
    _check_attention(lambda q, k, v, bs: a.flash_attention(q, k, v, bs, cfg, scale=0.3),
                     case, device, torch.float32, tol=tol, scale=0.3)
    assert bool(launches) == any(grad for _, grad in case[-1])
    lead, h, ql, kl, c, biases = case
    q, k, v, bs = _attn_inputs(lead, h, ql, kl, c, biases, device, torch.float32, seed=10)
    leaves = [q, k, v, *[b for b in bs if b.requires_grad]]
    runs = []
    for conf in (base, cfg):
        o = a.flash_attention(q, k, v, bs, conf, scale=0.3)
        runs.append([o.detach(), *torch.autograd.grad(o, leaves, torch.ones_like(o))])
    for i, (got, want) in enumerate(zip(*runs, strict=True)):
        if i == 1:  # dq
            assert rel(got, want) < (1e-2 if device.type == "cuda" else 1e-6)
        else:
            assert torch.equal(got, want)


@pytest.mark.parametrize("fused", [False, True], ids=["plain_logits", "fused_logits"])
def test_flash_attention_fully_masked_row_averages_values(kern, device, fused):
    """A query row whose every key carries the -1e9 mask (a padding MSA row, a padding
    residue's triangle row) averages v uniformly, as the plain core does in float32 (the
    logits round to -1e9 alike), and its gradients stay finite: no log-sum-exp or
    exponential overflows at that magnitude."""
    a = kern.attention
    cfg = a.FlashConfig(dq_kernel=True, store_ds=True, fused_logits=fused)
    lead, h, ql, kl, c, biases = ATTN_CASES["msa_row"]
    q, k, v, bs = _attn_inputs(lead, h, ql, kl, c, biases, device, torch.float32, seed=7)
    bs[0][:, 1] = -1e9  # MSA row 1: every key masked
    o = a.flash_attention(q, k, v, bs, cfg)
    want = v[0, 1].detach().mean(dim=-2, keepdim=True).expand(h, ql, c)  # [H, Q, c]
    assert rel(o[0, 1].detach(), want) < 1e-5
    ref = eager_attention(q.detach(), k.detach(), v.detach(), [b.detach() for b in bs])
    assert rel(o.detach(), ref) < (2e-3 if device.type == "cuda" else 1e-5)
    leaves = [q, k, v, bs[1]]
    grads = torch.autograd.grad(o, leaves, torch.randn_like(o))
    assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("kl,half", [(288, True), (448, False), (704, False)],
                         ids=["288_keys_32_key_blocks", "448_keys", "704_keys"])
@pytest.mark.parametrize("form", ["training", "evaluation"])
def test_flash_attention_fully_masked_row_over_many_key_blocks(kern, device, kl, half, form):
    """Rows whose every key the -1e9 mask hides (a padding sequence of the MSA row
    attention), in the fused-logits forward at 7 to 11 blocks of keys, bf16: finite, the
    uniform average of v, the other rows as eager fp64's. Compiled with FP fusion, the
    rescale exp2(m_i · log2 e - m_new · log2 e) became one fma whose exponent was the
    rounding error of m · log2 e (~18 at -1e9), not 0, compounding once a block: past six
    blocks such a row's sum overflowed and its output was NaN (3pwp_A's zero with the
    32-key blocks at 288 keys). The interpreter rounds each operation, so there it passed
    before the fix too; the sm90 compile's form is `test_sass.py`'s."""
    a = kern.attention
    cfg = a.FlashConfig(fused_logits=True, unmasked_loads=form == "evaluation",
                        bias_mma=form == "evaluation", fwd_half_key_block=half)
    assert kl // a._forward_launch(cfg, kl).block_k >= 7
    g = torch.Generator().manual_seed(kl)
    q, k, v = (torch.randn(1, 3, 2, n, 32, generator=g).to(device, torch.bfloat16)
               for n in (16, kl, kl))  # [1, S, H, Q or K, c]
    mask = torch.zeros(1, 3, 1, 1, kl)
    mask[..., kl - 13:] = -1e9  # padded keys
    mask[:, 1] = -1e9  # sequence 1: padding, every key masked
    pair = torch.randn(1, 1, 2, 16, kl, generator=g)
    biases = [mask.to(device), pair.to(device, torch.bfloat16).contiguous()]
    q, k, v = (t.requires_grad_(form == "training") for t in (q, k, v))
    with torch.set_grad_enabled(form == "training"):
        o = a.flash_attention(q, k, v, biases, cfg).detach()  # [1, 3, 2, 16, 32]
    assert torch.isfinite(o).all()
    want = v[0, 1].detach().float().mean(dim=-2, keepdim=True).expand(2, 16, 32)  # [H, Q, c]
    assert rel(o[0, 1].float(), want) < 1e-2
    ref = eager_attention(*(t.detach().double() for t in (q, k, v)),
                          [b.double() for b in biases])
    real = [0, 2]
    assert rel(o[0, real].double(), ref[0, real]) < 2e-2


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", ["tri_template", "msa_row"])
def test_flash_attention_scales_q_where_it_loads_it(kern, device, name, dtype):
    """The query scale applied where the forward kernel loads q: with and without
    gradients the same output, and a different one without the scale (the comparison with
    scaling before the kernel, gradients included, is the backward test below)."""
    a = kern.attention
    lead, h, ql, kl, c, biases = ATTN_CASES[name]
    q, k, v, bs = _attn_inputs(lead, h, ql, kl, c, biases, device, dtype, seed=3)
    scale = 0.3  # not a power of two: the product rounds
    with_grad = a.flash_attention(q, k, v, bs, scale=scale)
    with torch.no_grad():
        without = a.flash_attention(q, k, v, bs, scale=scale)
        unscaled = a.flash_attention(q, k, v, bs)
    assert with_grad.grad_fn is not None and without.grad_fn is None
    assert torch.equal(with_grad.detach(), without)
    if dtype == torch.float32:  # the scale is applied
        assert not torch.equal(unscaled, without)


# (names clear of test_kernels_in_triton_interpreter's selection words)
BACKWARD_FORMS = {"atomic_dq": dict(dq_kernel=False, store_ds=False),
                  "separate_dq": dict(dq_kernel=True, store_ds=False),
                  "saved_ds": dict(dq_kernel=True, store_ds=True)}


def _check_backward_scale(a, device, name, form, dtype):
    cfg = a.FlashConfig(**BACKWARD_FORMS[form])
    lead, h, ql, kl, c, biases = ATTN_CASES[name]
    scale = 0.3  # not a power of two: the products round
    results = []
    for inside in (True, False):
        q, k, v, bs = _attn_inputs(lead, h, ql, kl, c, biases, device, dtype, seed=4)
        o = (a.flash_attention(q, k, v, bs, cfg, scale=scale) if inside
             else a.flash_attention(q * scale, k, v, bs, cfg))
        do = torch.randn(o.shape, generator=torch.Generator().manual_seed(5)).to(device, dtype)
        leaves = [q, k, v, *[b for b in bs if b.requires_grad]]
        results.append([o.detach(), *torch.autograd.grad(o, leaves, do)])
    for got, want in zip(*results, strict=True):
        assert torch.equal(got, want)


@pytest.mark.parametrize("form", sorted(BACKWARD_FORMS))
@pytest.mark.parametrize("name", ["msa_row", "msa_col"])
def test_flash_attention_backward_scales_q_where_it_loads_it(kern, device, name, form):
    """With gradients too, the query scale applied where each kernel loads q gives the bits
    of the plain core's multiply before the kernel: the output and every gradient, dq
    through the multiply's backward, in each backward form (the stored dS and the dq
    kernel's epilogue only run where a bias needs a gradient / with dq_kernel)."""
    _check_backward_scale(kern.attention, device, name, form, torch.float32)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("form", sorted(BACKWARD_FORMS))
@pytest.mark.parametrize("name", ["msa_row", "msa_col"])
def test_flash_attention_backward_q_scale_bits_in_bf16(kern, device, name, form):
    """The same in bf16, on a GPU only: Triton's interpreter converts float32 to bfloat16
    by truncation (a GPU rounds to nearest even, as PyTorch does)."""
    _check_backward_scale(kern.attention, device, name, form, torch.bfloat16)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("form", sorted(BACKWARD_FORMS))
def test_attention_grid_past_65535_rows_and_heads(kern, device, form):
    """More than 65535 (row, head) pairs (8 chains batched through the extra-MSA row
    attention, 8 · 1024 rows · 8 heads, crashed call 26): CUDA's limit on a grid's second
    axis must not reject the launch. Forward and gradients against float64."""
    case = ((1, 8200), 8, 16, 16, 8, [((1, 8200, 1, 1, 16), False), ((1, 1, 8, 16, 16), True)])
    cfg = kern.attention.FlashConfig(**BACKWARD_FORMS[form])
    _check_attention(lambda q, k, v, bs: kern.attention.flash_attention(q, k, v, bs, cfg),
                     case, device, torch.float32, tol=2e-3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_sigmoid_gate_matches_pytorch(kern, device, dtype):
    """The fused gate against float64 math on the same (rounded) inputs, gradients too;
    5000 elements: more than one block, with a ragged end."""
    from scalefold.kernels.gate import sigmoid_gate

    g_ = torch.Generator().manual_seed(5)
    x = (torch.randn(2, 50, 50, generator=g_) * 2).to(device, dtype).requires_grad_()
    g = (torch.randn(2, 50, 50, generator=g_) * 3).to(device, dtype).requires_grad_()
    y = sigmoid_gate(x, g)
    assert y.dtype == dtype and y.shape == x.shape
    dy = torch.randn_like(y)
    got = [y, *torch.autograd.grad(y, (x, g), dy)]
    x64, g64 = (t.detach().double().requires_grad_() for t in (x, g))
    y64 = x64 * torch.sigmoid(g64)
    ref = [y64, *torch.autograd.grad(y64, (x64, g64), dy.double())]
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    for a, r in zip(got, ref):
        assert rel(a, r) < tol


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_sigmoid_gate_reads_strided_gate(kern, device, dtype):
    """The gate's logits as a slice of stacked projections (rows 4·C apart): the bits of
    the contiguous gate, gradients too (dg comes back contiguous)."""
    from scalefold.kernels.gate import _row_stride, sigmoid_gate

    g_ = torch.Generator().manual_seed(6)
    c = 24
    x = torch.randn(3, 70, c, generator=g_).to(device, dtype).requires_grad_()
    stacked = (torch.randn(3, 70, 4 * c, generator=g_) * 3).to(device, dtype)
    g = stacked[..., 3 * c:].requires_grad_()  # a leaf view: [3, 70, c], rows 4c apart
    assert _row_stride(g) == 4 * c and not g.is_contiguous()
    gc = g.detach().contiguous().requires_grad_()
    dy = torch.randn(x.shape, generator=g_).to(device, dtype)
    y = sigmoid_gate(x, g)
    yc = sigmoid_gate(x, gc)
    assert y.grad_fn is not None and "Gate" in type(y.grad_fn).__name__
    got = [y, *torch.autograd.grad(y, (x, g), dy)]
    ref = [yc, *torch.autograd.grad(yc, (x, gc), dy)]
    for a, r in zip(got, ref):
        assert torch.equal(a, r)


def test_row_stride_refuses_gaps_between_leading_dims():
    from scalefold.kernels.gate import _row_stride

    t = torch.zeros(4, 6, 10)
    assert _row_stride(t) == 10 and _row_stride(t[..., 2:5]) == 10
    assert _row_stride(t[:, :3]) is None  # rows of one batch entry, then a jump
    assert _row_stride(t.transpose(0, 1)) is None
    assert _row_stride(t[..., ::2]) is None


@pytest.mark.parametrize("columns", [False, True])
def test_flash_attention_output_in_stacked_projection_layout(kern, device, columns):
    """q, k, v as head-split slices of one stacked projection [*, L, 4·H·c]: the output
    (and, with gradients, dk and dv) laid out so that flattening the heads back is a
    view; the values those of contiguous inputs."""
    a = kern.attention
    g_ = torch.Generator().manual_seed(7)
    h, c, n, b = 2, 8, 20, 3
    y = torch.randn(1, n, b, 4 * h * c, generator=g_).to(device)  # [1, L, B, 4Hc]
    if not columns:
        y = y.transpose(1, 2).contiguous()  # [1, B, L, 4Hc]
    parts = y.split(h * c, dim=-1)

    def heads(t):
        t = t.unflatten(-1, (h, c))
        return t.movedim(-4, -2) if columns else t.transpose(-2, -3)

    q, k, v = (heads(t).requires_grad_() for t in parts[:3])
    o = a.flash_attention(q, k, v, [], scale=0.3)
    back = (o.movedim(-2, -4) if columns else o.transpose(-2, -3)).flatten(-2)
    assert back.data_ptr() == o.data_ptr() and back.is_contiguous()
    ref = a.flash_attention(*(t.detach().contiguous().requires_grad_() for t in (q, k, v)),
                            [], scale=0.3)
    assert torch.allclose(o, ref, atol=1e-5, rtol=1e-5)
    dk, dv = torch.autograd.grad(o, (k, v), torch.ones_like(o))
    for g in (dk, dv):
        flat = (g.movedim(-2, -4) if columns else g.transpose(-2, -3)).flatten(-2)
        assert flat.is_contiguous()


@pytest.mark.parametrize("name", sorted(ATTN_CASES))
def test_sdpa_core_matches_eager(device, name):
    _check_attention(SDPAAttentionCore(), ATTN_CASES[name], device, torch.float32, tol=2e-3)


@cuda
@pytest.mark.parametrize("case", [
    # MSA row attention with pair bias (Evoformer: c=32; extra MSA: c=8, 64 rows here)
    ((1, 16), 8, 256, 256, 32, [((1, 16, 1, 1, 256), False), ((1, 1, 8, 256, 256), True)]),
    ((1, 64), 8, 256, 256, 8, [((1, 64, 1, 1, 256), False), ((1, 1, 8, 256, 256), True)]),
    # triangle attention (c=32, 4 heads) and MSA column attention (128 rows, mask only)
    ((1, 256), 4, 256, 256, 32, [((1, 256, 1, 1, 256), False), ((1, 1, 4, 256, 256), True)]),
    ((1, 256), 8, 128, 128, 32, [((1, 256, 1, 1, 128), False)]),
])
@pytest.mark.parametrize("backward", ["atomic_dq", "separate_dq", "ds_kept", "ds_kept_fma",
                                      "ds_kept_fma_own_delta", "ds_kept_fma_own_delta_bare",
                                      "ds_kept_all"])
def test_flash_attention_bf16_benchmark_shapes(kern, case, backward):
    """bf16 at the benchmark's shapes, each backward form (the ids avoid the interpreter
    run's -k words); with the stored dS, dS is bf16 and the bias gradient its fp32 sum;
    `ds_kept_fma`: the same with the fused logits, `..._own_delta` also with the
    precomputed delta, `..._bare` also with the unmasked loads, `ds_kept_all` also with dq
    from the stored dS by its own kernel."""
    a = kern.attention
    cfg = {"atomic_dq": a.DEFAULT_CONFIG, "separate_dq": a.FlashConfig(dq_kernel=True),
           "ds_kept": a.FlashConfig(dq_kernel=True, store_ds=True),
           "ds_kept_fma": a.FlashConfig(dq_kernel=True, store_ds=True, fused_logits=True),
           "ds_kept_fma_own_delta": a.FlashConfig(dq_kernel=True, store_ds=True,
                                                  fused_logits=True,
                                                  precomputed_delta=True),
           "ds_kept_fma_own_delta_bare": a.FlashConfig(dq_kernel=True, store_ds=True,
                                                       fused_logits=True,
                                                       precomputed_delta=True,
                                                       unmasked_loads=True),
           "ds_kept_all": a.FlashConfig(dq_kernel=True, store_ds=True, fused_logits=True,
                                        precomputed_delta=True, unmasked_loads=True,
                                        ds_dq_kernel=True)}[backward]
    _check_attention(lambda q, k, v, bs: a.flash_attention(q, k, v, bs, cfg), case,
                     torch.device("cuda"), torch.bfloat16, tol=2e-2)


@cuda
def test_layer_norm_bf16_under_autocast(kern):
    x = torch.randn(4096, 128, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(128, device="cuda")
    b = torch.randn(128, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y = kern.layer_norm.layer_norm(x, w, b)
        ref = F.layer_norm(x, (128,), w, b)
    assert y.dtype == ref.dtype == torch.float32
    assert rel(y, ref) < 1e-5


@cuda
def test_layer_norm_compute_output_under_autocast(kern):
    """output="compute": bf16 out (PyTorch's CUDA autocast gives fp32), same values as
    the eager ComputeDtypeLayerNorm, gradients included."""
    from scalefold.kernels import ComputeDtypeLayerNorm

    g = torch.Generator().manual_seed(3)
    x = (torch.randn(4096, 128, generator=g) * 2).cuda().requires_grad_()
    w = torch.randn(128, generator=g).cuda().requires_grad_()
    b = torch.randn(128, generator=g).cuda().requires_grad_()
    ref_ln = ComputeDtypeLayerNorm.__new__(ComputeDtypeLayerNorm)
    torch.nn.Module.__init__(ref_ln)
    ref_ln.c, ref_ln.eps, ref_ln.weight, ref_ln.bias = 128, 1e-5, w, b
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y = kern.layer_norm.layer_norm(x, w, b, 1e-5, "compute")
        ref = ref_ln(x)
        plain = F.layer_norm(x, (128,), w, b)
    assert y.dtype == ref.dtype == torch.bfloat16 and plain.dtype == torch.float32
    dy = torch.randn_like(y)
    got = torch.autograd.grad(y, (x, w, b), dy)
    exp = torch.autograd.grad(ref, (x, w, b), dy)
    assert rel(y, ref) < 1e-2
    for a, r in zip(got, exp):
        assert rel(a, r) < 1e-2


@pytest.mark.parametrize("field", ["dq_kernel", "store_ds", "fused_logits",
                                   "precomputed_delta", "unmasked_loads", "ds_dq_kernel"])
def test_apply_speedups_gives_each_attention_field_to_every_flash_core(field):
    """Each `SpeedConfig.attention_*` switch reaches the `FlashConfig` of every attention
    core of the model, and only that switch."""
    from scalefold.kernels import apply_speedups
    from scalefold.kernels.attention import FlashConfig
    from scalefold.kernels.cores import TritonAttentionCore
    from scalefold.train.config import SpeedConfig

    model = AlphaFold(AlphaFoldConfig.tiny())
    apply_speedups(model, SpeedConfig(attention="triton", **{f"attention_{field}": True}),
                   "fp32")
    cores = [m for m in model.modules() if isinstance(m, TritonAttentionCore)]
    assert cores and all(c.config == FlashConfig(**{field: True}) for c in cores)


def test_apply_speedups_gives_the_stream_launch_to_every_triton_layer_norm():
    from scalefold.kernels import apply_speedups
    from scalefold.kernels.layer_norm import DEFAULT_LAUNCH, STREAM_LAUNCH, TritonLayerNorm
    from scalefold.train.config import SpeedConfig

    for stream, launch in ((False, DEFAULT_LAUNCH), (True, STREAM_LAUNCH)):
        model = AlphaFold(AlphaFoldConfig.tiny())
        apply_speedups(model, SpeedConfig(layer_norm="triton", layer_norm_bwd_stream=stream),
                       "fp32")
        norms = [m for m in model.modules() if isinstance(m, TritonLayerNorm)]
        assert norms and all(m.launch == launch for m in norms)
    with pytest.raises(ValueError, match="layer_norm_bwd_stream needs the Triton LayerNorm"):
        SpeedConfig(layer_norm_bwd_stream=True)


def test_apply_kernels_keeps_parameters_and_state_dict():
    model = AlphaFold(AlphaFoldConfig.tiny())
    before = dict(model.state_dict())
    params = {id(p) for p in model.parameters()}
    apply_kernels(model, attention="triton", layer_norm="triton")
    after = model.state_dict()
    assert list(before) == list(after)
    assert all(before[k] is after[k] or torch.equal(before[k], after[k]) for k in before)
    assert {id(p) for p in model.parameters()} == params
    cores = [m for m in model.modules() if isinstance(m, AttentionCore)]
    norms = [m for m in model.modules() if isinstance(m, LayerNorm)]
    assert cores and all(type(m).__name__ == "TritonAttentionCore" for m in cores)
    assert norms and all(type(m).__name__ == "TritonLayerNorm" for m in norms)
    apply_kernels(model, attention="eager", layer_norm="eager")
    assert all(type(m) is AttentionCore for m in model.modules() if isinstance(m, AttentionCore))
    with pytest.raises(ValueError):
        apply_kernels(model, attention="cudnn")


def test_keep_fp32_runs_structure_module_in_float32():
    from scalefold.utils.synthetic import synthetic_batch

    torch.manual_seed(0)
    model = AlphaFold(AlphaFoldConfig.tiny()).eval()
    keep_fp32(model)
    batch = synthetic_batch(None, n_res=8, n_clust=4, n_extra=4, n_templ=1)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(batch)
    assert out["pair"].dtype == torch.bfloat16 or out["pair"].dtype == torch.float32
    assert out["sm_frames"].dtype == torch.float32
    assert out["lddt_logits"].dtype == torch.float32
    assert out["distogram_logits"].dtype == torch.float32


@cuda
def test_tiny_model_with_kernels_matches_eager_on_gpu():
    """Whole-model parity: loss and every gradient, kernels vs the PyTorch path (fp32).

    One recycling slice: with recycling, the recycled positions are binned into a
    distogram, so a 1e-7 difference can move an atom across a bin edge and change the next
    iteration's input discontinuously (that is the model, not the kernels).
    """
    from scalefold.data.selection import last_iteration
    from scalefold.losses import AlphaFoldLoss, LossConfig
    from scalefold.utils.synthetic import synthetic_batch

    torch.backends.cuda.matmul.allow_tf32 = False
    batch = synthetic_batch(None, n_res=40, n_clust=20, n_extra=24, n_templ=2,
                            num_iterations=1, device="cuda")
    loss_fn = AlphaFoldLoss(LossConfig.mlperf()).cuda()
    results = []
    for impl in ("eager", "triton"):
        torch.manual_seed(0)
        model = AlphaFold(AlphaFoldConfig.tiny()).cuda().eval()  # eval: no dropout
        apply_kernels(model, attention=impl, layer_norm=impl)
        loss, _ = loss_fn(model(batch), last_iteration(batch), True)
        loss.backward()
        results.append((loss.detach(), {n: p.grad for n, p in model.named_parameters()
                                        if p.grad is not None}))
    (l0, g0), (l1, g1) = results
    assert rel(l1, l0) < 1e-5
    assert g0.keys() == g1.keys()
    flat0 = torch.cat([g.flatten() for g in g0.values()])
    flat1 = torch.cat([g1[n].flatten() for n in g0])
    assert rel(flat1, flat0) < 1e-4
    scale = max(float(g.norm()) for g in g0.values())
    errs = sorted(((rel(g1[n], g), n) for n, g in g0.items() if g.norm() > 1e-4 * scale),
                  reverse=True)
    assert errs[0][0] < 1e-3, f"worst gradients (rel. error, name): {errs[:5]}"


# The kernel tests the CPU runs under TRITON_INTERPRET=1, in groups of a subprocess each
# (one process for all ~200 outran its 300 s limit on CI's slower machine; the bias-MMA
# tests with the 32-key ones took 196 s of CPU time on a loaded 2-core machine, so they
# are two groups).
# (opm_projection_kernel_matches also selects the block-of-rows test)
INTERPRETER_GROUPS = {
    "logits": "fused_logits_matches",
    "mma": "bias_mma",
    "half_keys": "half_key_blocks or evaluation_shapes_bf16",
    "loads": "unmasked_loads or row_bias_loads",
    "forward": "forward_only_matches or fully_masked_row or untraced_in_a_compiled_region "
               "or flash_core_match or stacked_projections",
    "backward": "flash_attention_matches or dq_kernel or stored_ds or scales_q "
                "or other_launches",
    "others": "layer_norm_matches or sigmoid_gate or strided_gate "
              "or trimul_norm_kernel_matches or opm_projection_kernel_matches "
              "or opm_projection_kernel_under_recompute",
}


@pytest.mark.parametrize("group", list(INTERPRETER_GROUPS))
def test_kernels_in_triton_interpreter(group):
    """CPU: rerun this module's kernel tests in a fresh process under TRITON_INTERPRET=1."""
    from tests.kernels.conftest import rerun_in_interpreter

    rerun_in_interpreter(__file__, INTERPRETER_GROUPS[group])


@pytest.mark.parametrize("swaps", [False, True], ids=["plain", "swapped"])
def test_compile_glue_matches_eager(swaps):
    """`compile_glue` (Dynamo + AOTAutograd; the aot_eager backend keeps the CPU test fast,
    inductor's code generation is PyTorch's own to test): loss and gradients unchanged,
    on the plain model and on the modules the h100 preset swaps in that run without Triton
    (channels-first triangle multiplication, matvec bias gradients) with the outer
    product mean's recompute, which the H100 configs compile together."""
    from scalefold.data.selection import last_iteration
    from scalefold.kernels import (
        compile_glue,
        recompute_outer_product_mean,
        swap_linears,
        swap_triangle_multiplication,
    )
    from scalefold.kernels.glue import GLUE_MODULES
    from scalefold.losses import AlphaFoldLoss, LossConfig
    from scalefold.model.msa import Transition
    from scalefold.utils.synthetic import synthetic_batch

    torch._dynamo.reset()
    batch = synthetic_batch(None, n_res=12, n_clust=4, n_extra=6, n_templ=1, num_iterations=1)
    loss_fn = AlphaFoldLoss(LossConfig.mlperf())
    results = []
    for compiled in (False, True):
        torch.manual_seed(0)
        model = AlphaFold(AlphaFoldConfig.tiny()).eval()
        if swaps:
            swap_triangle_multiplication(model)
            swap_linears(model)
            recompute_outer_product_mean(model)
        if compiled:
            compile_glue(model, GLUE_MODULES, backend="aot_eager")
            assert all(m._compiled_call_impl is not None
                       for m in model.modules() if isinstance(m, Transition))
        loss, _ = loss_fn(model(batch), last_iteration(batch), True)
        loss.backward()
        results.append((loss.detach(), [p.grad for p in model.parameters()]))
    (l0, g0), (l1, g1) = results
    assert rel(l1, l0) < 1e-6
    flat0 = torch.cat([g.flatten() for g in g0 if g is not None])
    flat1 = torch.cat([g.flatten() for g in g1 if g is not None])
    assert rel(flat1, flat0) < 1e-5
    torch._dynamo.reset()


def test_recompute_outer_product_mean_same_gradients_less_saved():
    """Recomputing the outer product mean: bit-identical loss and gradients in training
    mode (dropout on, same seed: the module itself draws no random numbers), and its
    activations are no longer saved for backward."""
    from scalefold.bench.step import StepRunner, parse_variant, saved_activation_report, step_config
    from scalefold.data.selection import last_iteration
    from scalefold.kernels import recompute_outer_product_mean
    from scalefold.losses import AlphaFoldLoss, LossConfig
    from scalefold.utils.synthetic import synthetic_batch

    batch = synthetic_batch(None, n_res=16, n_clust=6, n_extra=8, n_templ=1, num_iterations=2)
    loss_fn = AlphaFoldLoss(LossConfig.mlperf())
    results = []
    for recompute in (False, True):
        torch.manual_seed(0)
        model = AlphaFold(AlphaFoldConfig.tiny()).train()
        if recompute:
            recompute_outer_product_mean(model)
            recompute_outer_product_mean(model)  # idempotent
        torch.manual_seed(1)
        loss, _ = loss_fn(model(batch), last_iteration(batch), True)
        loss.backward()
        results.append((loss.detach(), [p.grad for p in model.parameters()]))
    (l0, g0), (l1, g1) = results
    assert torch.equal(l0, l1)
    for a, b in zip(g0, g1):
        assert (a is None) == (b is None) and (a is None or torch.equal(a, b))

    def opm_share(recompute: bool) -> float:
        spec = "eager+recompute_outer_product" if recompute else "eager"
        runner = StepRunner(step_config("tiny", parse_variant(spec), 0), torch.device("cpu"))
        rows = saved_activation_report(runner, batch, rows=200).splitlines()[2:]
        return sum(float(r.split()[-2]) for r in rows if "outer_product_mean" in r.split()[0])

    assert opm_share(False) > 0 and opm_share(True) == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("recompute", [True, False], ids=["h100", "h200"])
def test_preset_speedups_compiled_with_inductor_match_uncompiled(recompute):
    """What the h100 and h200 presets build (every kernel and swap, bf16), with and
    without the inductor code of `compile_glue` and `compile_structure_module`: loss and gradients
    agree within bf16 rounding."""
    import dataclasses

    from scalefold.data.selection import last_iteration
    from scalefold.kernels import apply_speedups
    from scalefold.kernels._autocast import WeightCasts
    from scalefold.losses import AlphaFoldLoss, LossConfig
    from scalefold.train.config import SpeedConfig
    from scalefold.utils.synthetic import synthetic_batch

    torch._dynamo.reset()
    dev = torch.device("cuda")
    batch = synthetic_batch(None, n_res=32, n_clust=16, n_extra=24, n_templ=2,
                            num_iterations=1)
    batch = {k: v.to(dev) for k, v in batch.items()}
    loss_fn = AlphaFoldLoss(LossConfig.mlperf()).to(dev)  # its residue tables are buffers
    fast = dataclasses.replace(SpeedConfig.preset("h200"), cuda_graphs=False,
                               recompute_outer_product=recompute)
    results = []
    for compiled in (False, True):
        torch.manual_seed(0)
        model = AlphaFold(AlphaFoldConfig.tiny()).to(dev).eval()
        casts = WeightCasts()  # the presets cache weight casts; build_step opens the scope
        apply_speedups(model, dataclasses.replace(
            fast, compile_glue=compiled,
            compile_structure_module=compiled and fast.compile_structure_module), "bf16",
            casts)
        with torch.autocast("cuda", dtype=torch.bfloat16), casts.scope():
            out = model(batch)
        loss, _ = loss_fn(out, last_iteration(batch), True)
        loss.backward()
        results.append((loss.detach().float(), [p.grad for p in model.parameters()]))
    (l0, g0), (l1, g1) = results
    assert rel(l1, l0) < 2e-2
    flat0 = torch.cat([g.flatten().float() for g in g0 if g is not None])
    flat1 = torch.cat([g.flatten().float() for g in g1 if g is not None])
    assert rel(flat1, flat0) < 5e-2
    torch._dynamo.reset()
