"""`scalefold bench sass` on the CPU: the attention kernels compiled for sm90 and their
main loops counted, without a GPU."""

from __future__ import annotations

import os

import pytest
import torch

triton = pytest.importorskip("triton")

from scalefold.bench.sass import (  # noqa: E402
    Case,
    attention_cases,
    compile_case,
    compile_kernel,
    compile_signature,
    disassemble,
    format_table,
    format_tiles,
    mma_loops,
    opcodes,
    registers,
    run,
    run_tiles,
)

_BIN = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
pytestmark = pytest.mark.skipif(
    not all(os.path.exists(os.path.join(_BIN, t)) for t in ("ptxas", "nvdisasm")),
    reason="this Triton has no NVIDIA toolchain (ptxas, nvdisasm)")


def test_mma_loops_finds_the_loop_with_tensor_core_instructions():
    sass = "\n".join([
        "        /*0000*/                   MOV R1, c[0x0][0x28] ;",
        ".L_x_0:",
        "        /*0010*/                   FADD R2, R2, R3 ;",
        "        /*0020*/                   HGMMA.64x64x16.F32.BF16 R24, R88, gdesc[UR32], R24 ;",
        "        /*0030*/               @P0 BRA `(.L_x_0) ;",
        ".L_x_1:",
        "        /*0040*/                   IADD3 R4, R4, 0x1, RZ ;",
        "        /*0050*/               @P1 BRA `(.L_x_1) ;",
        "        /*0060*/                   EXIT ;",
    ])
    loops = mma_loops(sass)  # the second loop has no tensor-core instruction
    assert len(loops) == 1 and loops[0] == {"FADD": 1, "HGMMA": 1, "BRA": 1}


def test_forward_compiles_for_sm90_in_both_forms():
    """The evaluation forward (mask row + pair tile): each form's main loop holds the
    QKᵀ and P·V tensor-core instructions, and the fused form adds the biases inside the
    MMA, so its loop has fewer float adds."""
    case = attention_cases()[0]
    assert case.kernel == "_attn_fwd" and not case.constexprs["STORE_LSE"]
    rows = run(90, [case], log=lambda *a: None)
    plain, fused, unmasked = rows[:3]  # no delta form: the forward has none
    assert (plain["form"], fused["form"], unmasked["form"]) == ("plain", "fused",
                                                                 "fused+unmasked")
    assert plain["opcodes"]["HGMMA"] > 0 and plain["opcodes"]["HGMMA"] == fused["opcodes"]["HGMMA"]
    assert 0 < fused["opcodes"]["FADD"] < plain["opcodes"]["FADD"]
    # without bounds in the loop: fewer instructions, the same tensor-core work
    assert unmasked["opcodes"]["HGMMA"] == fused["opcodes"]["HGMMA"]
    assert unmasked["instructions"] < fused["instructions"]
    assert "fwd, no lse" in format_table(rows)


@pytest.mark.parametrize("name", ["fwd, tile only (folded mask)",
                                  "fwd, no lse (recycling, evaluation)"])
def test_the_bias_tile_as_mma_operand_leaves_no_global_load_in_the_loop(name):
    """`FlashConfig.bias_mma`: with the 16-bit bias tile as the identity's MMA operand,
    the forward's loop pipelines its loads into shared memory (cp.async, LDGSTS) like k
    and v: no plain global load of the tile is left waiting in the loop, nor its store to
    shared memory to change layout, and the loop is shorter for one more MMA (4 HGMMA of
    64 x 64 x 16). With a mask row only the row's loads stay."""
    case = next(c for c in attention_cases() if c.name == name)
    rows = {r["form"]: r for r in run(90, [case], log=lambda *a: None)}
    loaded, mma = rows["fused+unmasked"], rows["fused+unmasked+bias_mma"]
    assert mma["instructions"] < loaded["instructions"]
    assert mma["opcodes"]["HGMMA"] == loaded["opcodes"]["HGMMA"] + 4
    assert loaded["opcodes"]["STS"] > 0 and mma["opcodes"]["STS"] == 0
    if not case.constexprs["HAS_B0"]:  # the tile alone (the triangle attentions)
        assert loaded["opcodes"]["LDG"] > 0 and mma["opcodes"]["LDG"] == 0
    assert mma["registers"] <= 128  # four blocks of 128 threads still share a multiprocessor


def test_mma_loops_skips_the_return_of_an_out_of_line_wait():
    """A TMA barrier's try-wait loop is placed after the code and jumps back with an
    unpredicated branch: that jump spans the real loop but is not a loop itself."""
    sass = "\n".join([
        ".L_x_8:",
        "        /*0010*/                   FADD R2, R2, R3 ;",
        "        /*0020*/              @!P0 BRA `(.L_x_3) ;",
        ".L_x_4:",
        "        /*0030*/                   HGMMA.64x64x16.F32.BF16 R24, R88, gdesc[UR32], R24 ;",
        "        /*0040*/              @!P0 BRA `(.L_x_4) ;",
        "        /*0050*/                   EXIT ;",
        ".L_x_3:",
        "        /*0060*/                   SYNCS.PHASECHK.TRANS64.TRYWAIT P0, [UR19+0xb000], R16 ;",
        "        /*0070*/              @!P0 BRA `(.L_x_3) ;",
        "        /*0080*/                   BRA `(.L_x_8) ;",
    ])
    assert mma_loops(sass) == [{"HGMMA": 1, "BRA": 1}]


@pytest.mark.parametrize("name", ["fwd, tile only (folded mask)",
                                  "fwd, no lse (recycling, evaluation)"])
def test_pipelined_and_descriptor_bias_loads_leave_the_loop(name):
    """`FlashConfig.pipelined_bias_loads` and `.bias_tma`: with the loop's stages given
    explicitly, Triton's pipeliner also loads the bias tile (and the mask row) stages
    ahead, as a plain tile (cp.async) or through its TMA descriptor (one UTMALDG an
    iteration): no global load and no shared-memory store left in the loop, and the
    tensor-core work of the loop without the identity product (4 HGMMA fewer than
    bias_mma's). Without the explicit stages the descriptor's load is waited for in
    every iteration: its barrier's try-wait sits in the loop."""
    import scalefold.bench.sass as sass

    case = next(c for c in attention_cases() if c.name == name)
    rows = {r["form"]: r for r in run(90, [case], log=lambda *a: None)}
    mma = rows["fused+unmasked+bias_mma"]
    for form in ("fused+unmasked+pipelined", "fused+unmasked+bias_tma"):
        row = rows[form]
        assert row["opcodes"]["LDG"] == 0 and row["opcodes"]["STS"] == 0, form
        assert row["opcodes"]["HGMMA"] == mma["opcodes"]["HGMMA"] - 4, form
    tma = disassemble(compile_case(case, "fused+unmasked+bias_tma"))
    loop = max(mma_loops(tma), key=lambda c: sum(c.values()))
    assert loop.get("UTMALDG", 0) == 1
    # the descriptor without the explicit stages: loaded and waited for in the loop
    unpiped = dict(sass.FORMS["fused+unmasked+bias_tma"], LOOP_STAGES=None)
    forms = dict(sass.FORMS, unpiped=unpiped)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sass, "FORMS", forms)
        waited = disassemble(compile_case(case, "unpiped"))
    loop = max(mma_loops(waited), key=lambda c: sum(c.values()))
    assert loop.get("SYNCS", 0) > 0 and loop.get("UTMALDG", 0) == 1


def _ptx_of_line(ptx: str, path: str, line: int) -> list[str]:
    """The PTX instructions that `.loc` attributes to `line` of the source file `path`."""
    import re

    files = {m.group(1) for m in re.finditer(r'\.file\s+(\d+)\s+"([^"]+)"', ptx)
             if m.group(2).endswith(path)}
    out, keep = [], False
    for ln in ptx.splitlines():
        loc = re.match(r"\s*\.loc\s+(\d+)\s+(\d+)\s", ln)
        if loc:
            keep = loc.group(1) in files and int(loc.group(2)) == line
        elif keep and ln.strip() and not ln.strip().startswith(("$", "//")):
            out.append(ln.strip())
    return out


@pytest.mark.parametrize("name", [c.name for c in attention_cases() if c.kernel == "_attn_fwd"])
@pytest.mark.parametrize("form", ["fused", "fused+unmasked", "fused+unmasked+bias_mma"])
def test_the_forward_rescale_subtracts_rounded_values(name, form):
    """The fused forward's online-softmax rescale, compiled for sm90 with FP fusion: the
    exponent of alpha is a subtraction of two rounded values (the running and the new
    max, each times log2 e), so alpha is exactly 1 while a row's max holds. Contracted
    into an fma (m_i · log2 e exact in it), the exponent was the rounding error of
    m · log2 e, ~18 at the -1e9 masks, and a row of masked keys overflowed past six
    blocks of keys (docs/perf-log/2026-12-07.md section 6)."""
    import inspect

    import scalefold.kernels.attention as attention

    case = next(c for c in attention_cases() if c.name == name)
    src, first = inspect.getsourcelines(attention._softmax_step.fn)
    line = first + next(i for i, ln in enumerate(src) if "alpha = tl.exp2(" in ln)
    ptx = compile_kernel(case, form).asm["ptx"]
    alpha = _ptx_of_line(ptx, "kernels/attention.py", line)
    assert any(i.startswith("ex2") for i in alpha), alpha
    assert any(i.startswith("sub.f32") for i in alpha), alpha
    assert not any(i.startswith("fma") for i in alpha), alpha


def test_the_precomputed_delta_leaves_the_dk_dv_loop():
    """Every backward kernel compiles in every form (a case missing a constexpr fails), and
    with the delta precomputed the dk/dv kernel's loop no longer loads O and reduces dO·O
    for each block of queries: fewer instructions than with the fused logits alone."""
    dq = next(c for c in attention_cases() if c.kernel == "_attn_bwd_dq")
    assert all(mma_loops(disassemble(compile_case(dq, f))) for f in ("fused", "fused+delta"))
    kv = next(c for c in attention_cases() if c.name == "bwd_kv (mask only)")
    rows = {r["form"]: r for r in run(90, [kv], log=lambda *a: None)}
    assert set(rows) == {"plain", "fused", "fused+delta", "fused+unmasked",
                         "fused+delta+unmasked+pipelined", "fused+delta+unmasked"}
    assert rows["fused+delta"]["instructions"] < rows["fused"]["instructions"]
    assert rows["fused+delta+unmasked"]["instructions"] < rows["fused+delta"]["instructions"]
    # With the pair bias: no bounds in the loop, and the bias tile still read in vectors
    # (clamping the keys of a partial block into bounds instead cost them: 20 -> 56 LDG).
    ds = next(c for c in attention_cases() if c.name.startswith("bwd_kv, stored dS"))
    loops = {f: max(mma_loops(disassemble(compile_case(ds, f))), key=lambda c: sum(c.values()))
             for f in ("fused+delta", "fused+delta+unmasked")}
    assert sum(loops["fused+delta+unmasked"].values()) < sum(loops["fused+delta"].values())
    assert loops["fused+delta+unmasked"]["LDG"] <= loops["fused+delta"]["LDG"]
    unaligned = {r["form"]: r for r in run(90, [kv], log=lambda *a: None, aligned=False)}
    assert unaligned["fused+delta"]["instructions"] < unaligned["fused"]["instructions"]
    with pytest.raises(KeyError):
        compile_case(Case("incomplete", "_attn_bwd_dq", {"HAS_B0": True}), "plain")


def test_pipelined_dk_dv_loop_keeps_no_global_load():
    """`FlashConfig.bwd_pipelined_loads`: the dk/dv kernel with a pair bias and stored dS,
    its loop's 2 stages given to Triton explicitly: the bias tile, log-sum-exp and delta
    are loaded a block ahead with q and dO, no global load left in the loop; with 2 plain
    stages the pipeliner takes only q and dO and the other loads stay."""
    import dataclasses

    ds = next(c for c in attention_cases() if c.name.startswith("bwd_kv, stored dS"))
    two = dataclasses.replace(ds, stages=2)
    plain = max(mma_loops(disassemble(compile_case(two, "fused+delta+unmasked"))),
                key=lambda c: sum(c.values()))
    piped = max(mma_loops(disassemble(compile_case(ds, "fused+delta+unmasked+pipelined"))),
                key=lambda c: sum(c.values()))
    assert plain["LDG"] > 0 and piped.get("LDG", 0) == 0
    assert piped["HGMMA"] == plain["HGMMA"]


def test_every_case_and_the_new_kernels_compile_for_sm90():
    """What the GPU would compile first, checked here without one: every attention case in
    every form (aligned), the delta kernel and the triangle gating's backward kernel."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from scalefold.bench.sass import FORMS, _has
    from scalefold.kernels.attention import _attn_delta, _attn_dq_from_ds
    from scalefold.kernels.trimul_gating import _gating_bwd

    for case in attention_cases():
        for form, values in FORMS.items():
            if any(on and not _has(case, k) for k, on in values.items()):
                continue
            assert mma_loops(disassemble(compile_case(case, form))), (case.name, form)

    def compile_plain(fn, pointers: dict[str, str], constexprs: dict):
        sig = {p.name: ("constexpr" if p.is_constexpr else "*" + pointers[p.name]
                        if p.name in pointers else "fp32" if p.name == "q_scale" else "i32")
               for p in fn.params}
        values = {(p.num,): constexprs[p.name] for p in fn.params if p.is_constexpr}
        src = ASTSource(fn=fn, signature=sig, constexprs=values)
        return triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})

    assert compile_plain(_attn_delta, {"Op": "bf16", "DOp": "bf16", "DELTA": "fp32"},
                         {"BQ": 64, "BDV": 32}).asm["cubin"]
    assert compile_plain(_attn_dq_from_ds, {"DSp": "bf16", "Kp": "bf16", "DQp": "bf16"},
                         {"SCALE_Q": True, "BQ": 64, "BK": 64, "BD": 32,
                          "PREC": "tf32"}).asm["cubin"]
    assert compile_plain(_gating_bwd, {"P": "bf16", "M": "bf16", "DA": "bf16", "DB": "bf16",
                                       "DP": "bf16", "PART": "fp32"},
                         {"BLOCK": 1024}).asm["cubin"]


def test_tiles_compile_each_swept_launch_in_two_forms(monkeypatch):
    """`--tiles`: each launch of bench attention's sweep (here one a kernel) in today's form
    and with every switch on, with registers and the instructions a score element; a
    wider key block spreads the loop's fixed work over more elements."""
    import scalefold.bench.attention as attention_bench
    from scalefold.kernels.attention import Launch

    one = {"fwd": (Launch(64, 128, 4, 3),), "bwd_kv": (Launch(64, 64, 4, 1),),
           "bwd_dq": (Launch(64, 64, 4, 1),)}
    monkeypatch.setattr(attention_bench, "CANDIDATES", one)
    rows = run_tiles(90, log=lambda *a: None)
    cases = [c for c in attention_cases() if not c.name.startswith("fwd, lse")]
    assert len(rows) == 2 * len(cases)
    assert all(r["registers"] > 0 and r["per_element"] > 0 for r in rows)
    fwd = {r["form"]: r for r in rows if r["case"] == cases[0].name}
    every = "fused+unmasked+bias_mma"
    assert set(fwd) == {"plain", every} and {r["launch"] for r in fwd.values()} == {
        "64x128w4s3"}
    default = run(90, [cases[0]], log=lambda *a: None)  # 64 x 64 tiles
    by_form = {r["form"]: r for r in default}
    assert fwd[every]["per_element"] < by_form[every]["per_element"]
    table = format_tiles(rows)
    assert "64x128w4s3" in table and "/elem" in table


def test_transition_and_projection_gating_kernels_use_wgmma_without_spills():
    """`compile_signature` on kernels outside the attention: the fused transition (the
    pair transition at its default launch, the MSA width at its own) and the
    projection-gating kernel with its
    LayerNorm run their products on wgmma (HGMMA) and keep every value in registers (no
    local-memory stores)."""
    import scalefold.kernels.fused_transition as ft
    import scalefold.kernels.trimul_projection as tp

    la = ft.DEFAULT_LAUNCH
    transition = compile_signature(
        ft._transition_fwd, dict(C=128, BM=la.block_rows, BH=la.block_hidden, PREC="tf32"),
        {"X": "bf16", "LW": "fp32", "LB": "fp32", "W1": "bf16", "B1": "bf16", "W2": "bf16",
         "B2": "bf16", "R": "bf16", "Y": "bf16"}, warps=la.warps, stages=la.stages)
    gating = compile_signature(
        tp._projection_gating_fwd, dict(K=128, BC=64, BL=64, NORM=True, PREC="tf32"),
        {"Z": "bf16", "LW": "fp32", "LB": "fp32", "W": "bf16", "BIAS": "bf16", "M": "bf16",
         "OUT": "bf16"})
    wide = la.for_width(256)  # the MSA transition's width
    transition_256 = compile_signature(
        ft._transition_fwd, dict(C=256, BM=wide.block_rows, BH=wide.block_hidden, PREC="tf32"),
        {"X": "bf16", "LW": "fp32", "LB": "fp32", "W1": "bf16", "B1": "bf16", "W2": "bf16",
         "B2": "bf16", "R": "bf16", "Y": "bf16"}, warps=wide.warps, stages=wide.stages)
    for kernel in (transition, transition_256, gating):
        cub = kernel.asm["cubin"]
        ops = opcodes(cub)
        assert ops["HGMMA"] > 0 and ops["STL"] == 0 and registers(cub) <= 255


@pytest.mark.parametrize("norm", [True, False], ids=["layer_norm", "plain"])
def test_narrow_layer_norm_projection_launch_compiles_for_sm90(monkeypatch, norm):
    """The LayerNorm-projection kernel at 8 input channels (the tiny model's attention
    outputs: 2 heads of 4) with the constexprs its launch picks: the sm90 compile takes
    them (tl.dot refuses a reduction shorter than 16, which the interpreter does not
    check)."""
    import scalefold.kernels.ln_linear as ll

    seen = {}

    class Recorder:  # stands in for the kernel: keeps the launch's constexprs
        def __getitem__(self, grid):
            return lambda *args, **kw: seen.update(kw)

    monkeypatch.setattr(ll, "_ln_linear_fwd", Recorder())
    k, n, m = 8, 16, 5
    x, y = torch.randn(m, k), torch.empty(m, n)
    ln_w, ln_b = (torch.ones(k), torch.zeros(k)) if norm else (None, None)
    ll._launch(x, ln_w, ln_b, 1e-5, torch.randn(n, k), torch.zeros(n), False,
               ll.DEFAULT_LAUNCH, y, None, None)
    monkeypatch.undo()
    warps, stages = seen.pop("num_warps"), seen.pop("num_stages")
    seen["PREC"] = "tf32"
    kernel = compile_signature(
        ll._ln_linear_fwd, seen,
        {p: "bf16" for p in ("X", "W", "BIAS", "G", "R", "Y")} | {"LW": "fp32", "LB": "fp32"},
        warps=warps, stages=stages)
    assert opcodes(kernel.asm["cubin"])["STL"] == 0
