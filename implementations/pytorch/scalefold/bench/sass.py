"""`scalefold bench sass`: the attention kernels' inner loops in machine code, without a GPU.

Triton compiles a kernel for a GPU architecture it is not running on (its wheel carries
ptxas and nvdisasm), so on any machine this compiles each attention kernel for sm90 at
the model's common specialisations (bf16 operands, head dimension 32, 64 × 64 tiles, the
mask read as one row, the pair bias as a tile), in both forms of the logits
(`FlashConfig.fused_logits`; for the backward also with `precomputed_delta`),
disassembles it, and counts the instructions of its main
loop: the loop that holds the tensor-core instructions (HGMMA on sm90), once per block of
keys or queries. A count is not a time. It says how much work a loop iteration issues per
thread: where the kernel is bound by issuing instructions rather than by memory or the
tensor cores (the attention forward at ~1e12 score elements a second whatever the head
dimension, perf-log 2026-12-04 section 16), fewer instructions are the candidate for a
faster kernel, and spills (LDL/STL), shuffles (SHFL) and shared-memory traffic (STS/LDS)
inside the loop name layout conversions the source does not show. The numbers depend on
the Triton version: run it with the version the GPU machine has.
"""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass

from scalefold.kernels._triton import triton

# Instructions shown per loop (sm90 SASS opcodes, suffixes dropped).
COLUMNS = ("HGMMA", "HMMA", "MUFU", "FADD", "FMUL", "FFMA", "FMNMX", "SHFL", "STS", "LDS",
           "LDL", "STL", "LDG", "STG")

_OPCODE = re.compile(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]+)")
_LABEL = re.compile(r"^(\.L_x_\d+):$")
_BRANCH = re.compile(r"BRA `\((\.L_x_\d+)\)")


@dataclass(frozen=True)
class Case:
    """One kernel specialisation: its constexprs, pointer dtypes, launch."""

    name: str
    kernel: str  # attribute of scalefold.kernels.attention
    constexprs: dict
    warps: int = 4
    stages: int = 1


# The kernels' tensor parameters and their dtypes: bf16 but the mask, log-sum-exp, dBias
# and delta.
_POINTERS = {"Qp": "bf16", "Kp": "bf16", "Vp": "bf16", "B0": "fp32", "B1": "bf16",
             "Op": "bf16", "LSE": "fp32", "DOp": "bf16", "DKp": "bf16", "DVp": "bf16",
             "DSp": "bf16", "DQp": "bf16", "DBp": "fp32", "DELTA": "fp32"}
_UNIT_STRIDES = ("sqd", "skd", "svd", "sod", "sdod", "sdkd", "sdvd", "sdqd", "b0_k", "b1_k")


def attention_cases() -> list[Case]:
    """The kernels the `h200` preset runs most, at head dimension 32: the forward without
    and with the log-sum-exp (recycling/evaluation, training), the dk/dv kernel storing dS
    (calls whose pair bias needs a gradient), and the dk/dv and dq kernels of calls with
    the mask alone (MSA column attention)."""
    tiles = dict(SCALE_Q=True, BQ=64, BK=64, BD=32, BDV=32, PREC="tf32")
    both = dict(HAS_B0=True, HAS_B1=True, B0_ROW=True, B1_ROW=False)
    mask = dict(HAS_B0=True, HAS_B1=False, B0_ROW=True, B1_ROW=False)
    return [
        Case("fwd, no lse (recycling, evaluation)", "_attn_fwd",
             dict(**both, EVEN_K=True, STORE_LSE=False, **tiles), stages=3),
        Case("fwd, lse (training)", "_attn_fwd",
             dict(**both, EVEN_K=True, STORE_LSE=True, **tiles), stages=3),
        Case("bwd_kv, stored dS (pair bias)", "_attn_bwd_kv", dict(**both, STORE_DS=True, **tiles)),
        Case("bwd_kv (mask only)", "_attn_bwd_kv", dict(**mask, STORE_DS=False, **tiles)),
        Case("bwd_dq (mask only)", "_attn_bwd_dq", dict(**mask, **tiles)),
    ]


# The kernels' forms compared: today's, the fused logits, and the fused logits with the
# backward's delta precomputed (`FlashConfig.fused_logits`, `.precomputed_delta`).
FORMS: dict[str, dict[str, bool]] = {
    "plain": {"FUSED": False, "PRE_DELTA": False},
    "fused": {"FUSED": True, "PRE_DELTA": False},
    "fused+delta": {"FUSED": True, "PRE_DELTA": True},
}


def _has(case: Case, name: str) -> bool:
    import scalefold.kernels.attention as attention

    return any(p.name == name for p in getattr(attention, case.kernel).params)


# Integer arguments Triton never sees as multiples of 16 at the model's shapes (rows of
# heads folded with other dims, head counts 4 and 8).
_NOT_ALIGNED = ("Z2", "H")


def compile_case(case: Case, form: str, arch: int = 90, aligned: bool = True) -> bytes:
    """The case's cubin in `form` (a key of FORMS) for sm_`arch`, specialised as Triton
    specialises a launch on the model's tensors: unit strides as constants, pointers
    16-byte aligned and, with `aligned`, the lengths and strides marked as multiples of 16
    (true at the crop and at every length bucket; not for chains at their own lengths,
    `eval_length_buckets="off"`). The marks change the code Triton chooses."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    import scalefold.kernels.attention as attention

    fn = getattr(attention, case.kernel)
    constexprs = dict(case.constexprs, **{k: v for k, v in FORMS[form].items() if _has(case, k)})
    signature, values, attrs = {}, {}, {}
    for p in fn.params:
        if p.is_constexpr:
            signature[p.name] = "constexpr"
            values[(p.num,)] = constexprs[p.name]
        elif p.name in _UNIT_STRIDES:
            signature[p.name] = "constexpr"
            values[(p.num,)] = 1
        elif p.name in _POINTERS:
            signature[p.name] = "*" + _POINTERS[p.name]
            attrs[(p.num,)] = [["tt.divisibility", 16]]
        elif p.name == "q_scale":
            signature[p.name] = "fp32"
        else:
            signature[p.name] = "i32"
            if aligned and p.name not in _NOT_ALIGNED:
                attrs[(p.num,)] = [["tt.divisibility", 16]]
    src = ASTSource(fn=fn, signature=signature, constexprs=values, attrs=attrs)
    kernel = triton.compile(src, target=GPUTarget("cuda", arch, 32),
                            options={"num_warps": case.warps, "num_stages": case.stages})
    return kernel.asm["cubin"]


def disassemble(cubin: bytes) -> str:
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "nvdisasm")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "kernel.cubin")
        with open(path, "wb") as f:
            f.write(cubin)
        return subprocess.run([tool, "-c", path], capture_output=True, text=True,
                              check=True).stdout


def mma_loops(sass: str) -> list[collections.Counter]:
    """Opcode counts of every loop (a backward branch to an earlier label) whose body
    holds tensor-core instructions, innermost loops as they appear."""
    lines = sass.splitlines()
    labels = {m.group(1): i for i, line in enumerate(lines) if (m := _LABEL.match(line))}
    loops = []
    for i, line in enumerate(lines):
        m = _BRANCH.search(line)
        if not m or labels.get(m.group(1), i) >= i:
            continue
        ops = [o.group(1).split(".")[0] for body in lines[labels[m.group(1)]:i + 1]
               if (o := _OPCODE.search(body))]
        if "HGMMA" in ops or "HMMA" in ops:
            loops.append(collections.Counter(ops))
    return loops


def run(arch: int = 90, cases: list[Case] | None = None, log=print,
        aligned: bool = True) -> list[dict]:
    log(f"bench sass: Triton {triton.__version__}, sm_{arch}; main-loop instructions per "
        "iteration (per thread) in each form: " + ", ".join(FORMS) + "; lengths and strides "
        + ("multiples of 16 (the crop, length buckets)" if aligned
           else "not multiples of 16 (chains at their own lengths)"))
    rows = []
    for case in cases or attention_cases():
        for form, values in FORMS.items():
            if values["PRE_DELTA"] and not _has(case, "PRE_DELTA"):
                continue  # the forward has no delta
            loops = mma_loops(disassemble(compile_case(case, form, arch, aligned)))
            main = max(loops, key=lambda c: sum(c.values())) if loops else collections.Counter()
            rows.append({"case": case.name, "form": form,
                         "instructions": sum(main.values()),
                         "opcodes": {k: main.get(k, 0) for k in COLUMNS}})
    return rows


def format_table(rows: list[dict]) -> str:
    head = f"{'kernel':38s}{'form':>12s}{'instr':>7s}" + "".join(f"{c:>7s}" for c in COLUMNS)
    lines = [head]
    for r in rows:
        lines.append(f"{r['case'][:38]:38s}{r['form']:>12s}"
                     f"{r['instructions']:7d}" + "".join(f"{r['opcodes'][c]:7d}" for c in COLUMNS))
    return "\n".join(lines)


def main(arch: int = 90, json_path: str | None = None, aligned: bool = True) -> int:
    if triton is None:
        raise SystemExit("bench sass needs Triton (the `gpu` extra)")
    rows = run(arch, aligned=aligned)
    print(format_table(rows))
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"triton": triton.__version__, "arch": arch, "aligned": aligned,
                       "rows": rows}, f, indent=1)
    return 0
