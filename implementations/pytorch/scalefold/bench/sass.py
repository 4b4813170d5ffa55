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
inside the loop name layout conversions the source does not show. Each row also gives
the instructions a score element (all threads' instructions over an iteration's BQ × BK
elements: what compares tile shapes) and the registers per thread (cuobjdump), which
bound how many blocks share a multiprocessor. `--tiles` compiles every launch that
`scalefold bench attention` sweeps on the GPU, in today's form and with every switch on,
so that the GPU's sweep can start from the launches worth its time. The numbers depend on
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
             "DSp": "bf16", "DQp": "bf16", "DBp": "fp32", "DELTA": "fp32", "Gp": "bf16"}
_UNIT_STRIDES = ("sqd", "skd", "svd", "sod", "sdod", "sdkd", "sdvd", "sdqd", "b0_k", "b1_k",
                 "sgd")


def attention_cases() -> list[Case]:
    """The kernels the `h200` preset runs most, at head dimension 32: the forward without
    and with the log-sum-exp (recycling/evaluation, training), the dk/dv kernel storing dS
    (calls whose pair bias needs a gradient), and the dk/dv and dq kernels of calls with
    the mask alone (MSA column attention)."""
    tiles = dict(SCALE_Q=True, BQ=64, BK=64, BD=32, BDV=32, PREC="tf32")
    both = dict(HAS_B0=True, HAS_B1=True, B0_ROW=True, B1_ROW=False)
    mask = dict(HAS_B0=True, HAS_B1=False, B0_ROW=True, B1_ROW=False)
    tile = dict(HAS_B0=False, HAS_B1=True, B0_ROW=False, B1_ROW=False)
    even = dict(EVEN_K=True, EVEN_D=True)
    return [
        Case("fwd, no lse (recycling, evaluation)", "_attn_fwd",
             dict(**both, STORE_LSE=False, **even, **tiles), stages=3),
        Case("fwd, tile only (folded mask)", "_attn_fwd",
             dict(**tile, STORE_LSE=False, **even, **tiles), stages=3),
        Case("fwd, lse (training)", "_attn_fwd",
             dict(**both, STORE_LSE=True, **even, **tiles), stages=3),
        Case("bwd_kv, stored dS (pair bias)", "_attn_bwd_kv",
             dict(**both, STORE_DS=True, **even, **tiles)),
        Case("bwd_kv (mask only)", "_attn_bwd_kv", dict(**mask, STORE_DS=False, **even, **tiles)),
        Case("bwd_dq (mask only)", "_attn_bwd_dq", dict(**mask, EVEN_D=True, **tiles)),
    ]


# The kernels' forms compared: today's, the fused logits, and the fused logits with the
# backward's delta precomputed or the loads unmasked (`FlashConfig.fused_logits`,
# `.precomputed_delta`, `.unmasked_loads`), and in the forward the pair tile as an MMA
# operand (`.bias_mma`), loaded stages ahead by the loop's pipeline (`.pipelined_bias_loads`:
# LOOP_STAGES, True standing for the case's stages) or through a TMA descriptor
# (`.bias_tma`); in the dk/dv kernel its loop with at least 2 stages given explicitly
# (`.bwd_pipelined_loads`: Q_LOOP_STAGES, a count). A form is compiled only for the kernels
# that have all of its switches; a kernel's last form is today's (`--tiles` compiles it
# beside the first).
FORMS: dict[str, dict[str, object]] = {
    "plain": {"FUSED": False, "PRE_DELTA": False, "UNMASKED": False},
    "fused": {"FUSED": True, "PRE_DELTA": False, "UNMASKED": False},
    "fused+delta": {"FUSED": True, "PRE_DELTA": True, "UNMASKED": False},
    "fused+unmasked": {"FUSED": True, "PRE_DELTA": False, "UNMASKED": True},
    "fused+delta+unmasked+pipelined": {"FUSED": True, "PRE_DELTA": True, "UNMASKED": True,
                                       "Q_LOOP_STAGES": 2},
    "fused+delta+unmasked": {"FUSED": True, "PRE_DELTA": True, "UNMASKED": True},
    "fused+unmasked+pipelined": {"FUSED": True, "PRE_DELTA": False, "UNMASKED": True,
                                 "LOOP_STAGES": True},
    "fused+unmasked+bias_tma": {"FUSED": True, "PRE_DELTA": False, "UNMASKED": True,
                                "B1_TMA": True, "LOOP_STAGES": True},
    "fused+unmasked+bias_mma": {"FUSED": True, "PRE_DELTA": False, "UNMASKED": True,
                                "B1_MMA": True},
}


def _has(case: Case, name: str) -> bool:
    import scalefold.kernels.attention as attention

    return any(p.name == name for p in getattr(attention, case.kernel).params)


# Integer arguments Triton never sees as multiples of 16 at the model's shapes (rows of
# heads folded with other dims, head counts 4 and 8).
_NOT_ALIGNED = ("Z2", "H")


def compile_case(case: Case, form: str, arch: int = 90, aligned: bool = True) -> bytes:
    """The case's cubin (see `compile_kernel`)."""
    return compile_kernel(case, form, arch, aligned).asm["cubin"]


def compile_kernel(case: Case, form: str, arch: int = 90, aligned: bool = True):
    """The case compiled in `form` (a key of FORMS) for sm_`arch`, specialised as Triton
    specialises a launch on the model's tensors: unit strides as constants, pointers
    16-byte aligned and, with `aligned`, the lengths and strides marked as multiples of 16
    (true at the crop and at every length bucket; not for chains at their own lengths,
    `eval_length_buckets="off"`). The marks change the code Triton chooses."""
    import scalefold.kernels.attention as attention

    fn = getattr(attention, case.kernel)
    constexprs = dict(case.constexprs, **{k: v for k, v in FORMS[form].items() if _has(case, k)})
    stages = case.stages
    if constexprs.get("LOOP_STAGES"):
        constexprs["LOOP_STAGES"] = case.stages
    if constexprs.get("Q_LOOP_STAGES"):  # at least that many (`bwd_pipelined_loads`)
        stages = constexprs["Q_LOOP_STAGES"] = max(stages, constexprs["Q_LOOP_STAGES"])
    # a bias by its descriptor: a [BQ, BK] block of a bf16 tensor
    block = f"[{case.constexprs['BQ']}, {case.constexprs['BK']}]"
    descriptors = {f"B{i}D": f"tensordesc<bf16{block}>" for i in (0, 1)
                   if constexprs.get(f"B{i}_TMA")}
    ints = {p.name for p in fn.params if not p.is_constexpr}
    return compile_signature(fn, constexprs, _POINTERS, arch, case.warps, stages,
                             floats=("q_scale",), unit=_UNIT_STRIDES,
                             not_aligned=_NOT_ALIGNED if aligned else tuple(ints),
                             descriptors=descriptors)


def compile_signature(fn, constexprs: dict, pointers: dict[str, str], arch: int = 90,
                      warps: int = 4, stages: int = 2, floats: tuple[str, ...] = ("eps",),
                      unit: tuple[str, ...] = (), not_aligned: tuple[str, ...] = (),
                      descriptors: dict[str, str] | None = None):
    """Any Triton kernel `fn` compiled for sm_`arch` without a GPU: `constexprs` by name
    (a switch left out takes the kernel's default), `pointers` name -> element type
    ("bf16", "fp32", ...: 16-byte aligned), the `floats` as fp32 scalars, the `unit`
    integer arguments as the constant 1 (unit strides), the `descriptors` name -> tensor
    descriptor type ("tensordesc<bf16[64, 64]>"; other parameters that default to None are
    passed None) and every other integer but the `not_aligned` marked a multiple of 16
    (the length buckets' alignment)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    signature, values, attrs = {}, {}, {}
    for p in fn.params:
        if p.is_constexpr:
            signature[p.name] = "constexpr"
            values[(p.num,)] = (constexprs[p.name] if p.name in constexprs or not p.has_default
                                else p.default)
        elif p.name in unit:
            signature[p.name] = "constexpr"
            values[(p.num,)] = 1
        elif p.name in pointers:
            signature[p.name] = "*" + pointers[p.name]
            attrs[(p.num,)] = [["tt.divisibility", 16]]
        elif p.name in floats:
            signature[p.name] = "fp32"
        elif p.name in (descriptors or {}):
            signature[p.name] = descriptors[p.name]
        elif p.has_default and p.default is None:
            signature[p.name] = "constexpr"
            values[(p.num,)] = None
        else:
            signature[p.name] = "i32"
            if p.name not in not_aligned:
                attrs[(p.num,)] = [["tt.divisibility", 16]]
    src = ASTSource(fn=fn, signature=signature, constexprs=values, attrs=attrs)
    return triton.compile(src, target=GPUTarget("cuda", arch, 32),
                          options={"num_warps": warps, "num_stages": stages})


def opcodes(cubin: bytes) -> collections.Counter:
    """Opcode counts of the whole kernel (predicates and modifiers dropped)."""
    return collections.Counter(m.group(1).split(".")[0]
                               for line in disassemble(cubin).splitlines()
                               if (m := _OPCODE.search(line)))


def _tool(name: str) -> str:
    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)


def _run_on_cubin(tool: str, args: list[str], cubin: bytes) -> str:
    """stdout of one of Triton's NVIDIA tools run on `cubin` (written to a temporary file)."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "kernel.cubin")
        with open(path, "wb") as f:
            f.write(cubin)
        return subprocess.run([_tool(tool), *args, path], capture_output=True, text=True,
                              check=True).stdout


def registers(cubin: bytes) -> int:
    """Registers per thread of the cubin's kernel (cuobjdump's resource usage)."""
    out = _run_on_cubin("cuobjdump", ["--dump-resource-usage"], cubin)
    m = re.search(r"REG:(\d+)", out)
    if m is None:
        raise RuntimeError(f"no register count in cuobjdump's output: {out[-300:]}")
    return int(m.group(1))


def disassemble(cubin: bytes) -> str:
    return _run_on_cubin("nvdisasm", ["-c"], cubin)


def mma_loops(sass: str) -> list[collections.Counter]:
    """Opcode counts of every loop (a predicated backward branch to an earlier label)
    whose body holds tensor-core instructions, innermost loops as they appear. An
    unpredicated backward branch is the return of an out-of-line wait (a TMA barrier's
    try-wait loop placed after the code), not a loop."""
    lines = sass.splitlines()
    labels = {m.group(1): i for i, line in enumerate(lines) if (m := _LABEL.match(line))}
    loops = []
    for i, line in enumerate(lines):
        m = _BRANCH.search(line)
        if not m or labels.get(m.group(1), i) >= i or "@" not in line[:m.start()]:
            continue
        ops = [o.group(1).split(".")[0] for body in lines[labels[m.group(1)]:i + 1]
               if (o := _OPCODE.search(body))]
        if "HGMMA" in ops or "HMMA" in ops:
            loops.append(collections.Counter(ops))
    return loops


def measure(case: Case, form: str, arch: int = 90, aligned: bool = True) -> dict:
    """The main loop of `case` in `form`: instructions per iteration (per thread), per
    score element (all threads' instructions over the BQ × BK elements of an iteration),
    opcode counts, registers per thread and dynamic shared memory."""
    kernel = compile_kernel(case, form, arch, aligned)
    cubin = kernel.asm["cubin"]
    loops = mma_loops(disassemble(cubin))
    main = max(loops, key=lambda c: sum(c.values())) if loops else collections.Counter()
    n = sum(main.values())
    elements = case.constexprs["BQ"] * case.constexprs["BK"]
    return {"case": case.name, "form": form, "instructions": n,
            "per_element": n * case.warps * 32 / elements,
            "registers": registers(cubin), "shared": int(kernel.metadata.shared),
            "opcodes": {k: main.get(k, 0) for k in COLUMNS}}


def _forms_of(case: Case) -> list[str]:
    # a form needs every switch it turns on (the forward has no delta)
    return [f for f, values in FORMS.items()
            if not any(on and not _has(case, k) for k, on in values.items())]


def run(arch: int = 90, cases: list[Case] | None = None, log=print,
        aligned: bool = True) -> list[dict]:
    log(f"bench sass: Triton {triton.__version__}, sm_{arch}; main-loop instructions per "
        "iteration (per thread) in each form: " + ", ".join(FORMS) + "; lengths and strides "
        + ("multiples of 16 (the crop, length buckets)" if aligned
           else "not multiples of 16 (chains at their own lengths)"))
    return [measure(case, form, arch, aligned)
            for case in cases or attention_cases() for form in _forms_of(case)]


# The kernels whose launches `scalefold bench attention` sweeps, by kernel name.
_KINDS = {"_attn_fwd": "fwd", "_attn_bwd_kv": "bwd_kv", "_attn_bwd_dq": "bwd_dq"}


def run_tiles(arch: int = 90, log=print, aligned: bool = True) -> list[dict]:
    """Every launch `bench attention` sweeps (tile sizes, warps, stages), for each case but
    the training forward (the same loop as the recycling forward's, with one more store
    after it), in today's form and in the form with every switch on: where the GPU sweep
    should look (few instructions a score element, no spills, registers that leave room
    for several blocks on a multiprocessor)."""
    from scalefold.bench.attention import CANDIDATES

    log(f"bench sass --tiles: Triton {triton.__version__}, sm_{arch}; each launch of "
        "`bench attention`'s sweep, plain and with every switch")
    rows = []
    for case in attention_cases():
        if case.name.startswith("fwd, lse"):
            continue
        forms = _forms_of(case)
        for launch in CANDIDATES[_KINDS[case.kernel]]:
            tiled = Case(case.name, case.kernel,
                         dict(case.constexprs, BQ=launch.block_q, BK=launch.block_k),
                         warps=launch.warps, stages=launch.stages)
            for form in (forms[0], forms[-1]):
                try:
                    row = measure(tiled, form, arch, aligned)
                except Exception as e:  # a launch that does not compile (shared memory)
                    log(f"  {case.name} {launch.name} {form}: {type(e).__name__}: "
                        f"{str(e)[:80]}")
                    continue
                rows.append(dict(row, launch=launch.name))
    return rows


def format_tiles(rows: list[dict]) -> str:
    head = (f"{'kernel':32s}{'launch':>12s}{'form':>22s}{'instr':>7s}{'/elem':>7s}"
            f"{'regs':>6s}{'smem':>8s}{'spill':>6s}")
    lines = [head]
    for case in dict.fromkeys(r["case"] for r in rows):
        mine = sorted((r for r in rows if r["case"] == case), key=lambda r: r["per_element"])
        for r in mine:
            spill = r["opcodes"]["LDL"] + r["opcodes"]["STL"]
            lines.append(f"{case[:32]:32s}{r['launch']:>12s}{r['form']:>22s}"
                         f"{r['instructions']:7d}{r['per_element']:7.2f}{r['registers']:6d}"
                         f"{r['shared']:8d}{spill:6d}")
    return "\n".join(lines)


def format_table(rows: list[dict]) -> str:
    w = max([len(r["form"]) + 2 for r in rows] + [22])
    head = (f"{'kernel':38s}{'form':>{w}s}{'instr':>7s}{'/elem':>7s}{'regs':>6s}"
            + "".join(f"{c:>7s}" for c in COLUMNS))
    lines = [head]
    for r in rows:
        lines.append(f"{r['case'][:38]:38s}{r['form']:>{w}s}{r['instructions']:7d}"
                     f"{r['per_element']:7.2f}{r['registers']:6d}"
                     + "".join(f"{r['opcodes'][c]:7d}" for c in COLUMNS))
    return "\n".join(lines)


def main(arch: int = 90, json_path: str | None = None, aligned: bool = True,
         tiles: bool = False) -> int:
    if triton is None:
        raise SystemExit("bench sass needs Triton (the `gpu` extra)")
    if tiles:
        rows = run_tiles(arch, aligned=aligned)
        print(format_tiles(rows))
    else:
        rows = run(arch, aligned=aligned)
        print(format_table(rows))
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"triton": triton.__version__, "arch": arch, "aligned": aligned,
                       "tiles": tiles, "rows": rows}, f, indent=1)
    return 0
