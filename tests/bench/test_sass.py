"""`scalefold bench sass` on the CPU: the attention kernels compiled for sm90 and their
main loops counted, without a GPU."""

from __future__ import annotations

import os

import pytest

triton = pytest.importorskip("triton")

from scalefold.bench.sass import (  # noqa: E402
    Case,
    attention_cases,
    compile_case,
    disassemble,
    format_table,
    mma_loops,
    run,
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
    plain, fused = rows  # no delta form: the forward has none
    assert (plain["form"], fused["form"]) == ("plain", "fused")
    assert plain["opcodes"]["HGMMA"] > 0 and plain["opcodes"]["HGMMA"] == fused["opcodes"]["HGMMA"]
    assert 0 < fused["opcodes"]["FADD"] < plain["opcodes"]["FADD"]
    assert "fwd, no lse" in format_table(rows)


def test_the_precomputed_delta_leaves_the_dk_dv_loop():
    """Every backward kernel compiles in every form (a case missing a constexpr fails), and
    with the delta precomputed the dk/dv kernel's loop no longer loads O and reduces dO·O
    for each block of queries: fewer instructions than with the fused logits alone."""
    dq = next(c for c in attention_cases() if c.kernel == "_attn_bwd_dq")
    assert all(mma_loops(disassemble(compile_case(dq, f))) for f in ("fused", "fused+delta"))
    kv = next(c for c in attention_cases() if c.name == "bwd_kv (mask only)")
    rows = {r["form"]: r for r in run(90, [kv], log=lambda *a: None)}
    assert set(rows) == {"plain", "fused", "fused+delta"}
    assert rows["fused+delta"]["instructions"] < rows["fused"]["instructions"]
    unaligned = {r["form"]: r for r in run(90, [kv], log=lambda *a: None, aligned=False)}
    assert unaligned["fused+delta"]["instructions"] < unaligned["fused"]["instructions"]
    with pytest.raises(KeyError):
        compile_case(Case("incomplete", "_attn_bwd_dq", {"HAS_B0": True}), "plain")


def test_every_case_and_the_new_kernels_compile_for_sm90():
    """What the GPU would compile first, checked here without one: every attention case in
    every form (aligned), the delta kernel and the triangle gating's backward kernel."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from scalefold.bench.sass import FORMS, _has
    from scalefold.kernels.attention import _attn_delta
    from scalefold.kernels.trimul_gating import _gating_bwd

    for case in attention_cases():
        for form, values in FORMS.items():
            if values["PRE_DELTA"] and not _has(case, "PRE_DELTA"):
                continue
            assert mma_loops(disassemble(compile_case(case, form))), (case.name, form)

    def compile_plain(fn, pointers: dict[str, str], constexprs: dict):
        sig = {p.name: ("constexpr" if p.is_constexpr else "*" + pointers[p.name]
                        if p.name in pointers else "i32") for p in fn.params}
        values = {(p.num,): constexprs[p.name] for p in fn.params if p.is_constexpr}
        src = ASTSource(fn=fn, signature=sig, constexprs=values)
        return triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})

    assert compile_plain(_attn_delta, {"Op": "bf16", "DOp": "bf16", "DELTA": "fp32"},
                         {"BQ": 64, "BDV": 32}).asm["cubin"]
    assert compile_plain(_gating_bwd, {"P": "bf16", "M": "bf16", "DA": "bf16", "DB": "bf16",
                                       "DP": "bf16", "PART": "fp32"},
                         {"BLOCK": 1024}).asm["cubin"]
