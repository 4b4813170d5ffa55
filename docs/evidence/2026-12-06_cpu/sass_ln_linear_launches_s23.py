"""sm90 compiles of `_ln_linear_fwd` at the evaluation's widths for 24 launches, without a GPU
(twenty-third session): registers, shared memory, spills, programs a multiprocessor.
Usage: python docs/evidence/2026-12-06_cpu/sass_ln_linear_launches_s23.py"""
import itertools

import scalefold.kernels.ln_linear as L
from scalefold.bench.sass import compile_signature, opcodes, registers

P = {"X": "bf16", "LW": "fp32", "LB": "fp32", "W": "bf16", "BIAS": "bf16", "G": "bf16", "R": "fp32", "Y": "bf16"}
shapes = {"tri proj K128 N512": dict(HAS_BIAS=True, RELU=False, GATE=False, RESIDUAL=False, NORM=True, BK=128),
          "tri out K128 +res32": dict(HAS_BIAS=True, RELU=False, GATE=False, RESIDUAL=True, NORM=False, BK=128),
          "msa out K256 +res32": dict(HAS_BIAS=True, RELU=False, GATE=False, RESIDUAL=True, NORM=False, BK=256)}
for name, cx in shapes.items():
    for bm, bn, w, st in itertools.product((64, 128), (64, 128), (4, 8), (1, 2, 3)):
        if cx["RESIDUAL"] and bn > 64:
            continue
        p = dict(P, Y="fp32" if cx["RESIDUAL"] else "bf16")
        try:
            k = compile_signature(L._ln_linear_fwd, dict(cx, BM=bm, BN=bn, PREC="tf32"), p, warps=w, stages=st,
                                  unit=("sxk", "syn", "sgn", "srn"))
        except Exception as e:
            print(f"{name:20s} {bm:4d} {bn:4d} w{w} s{st}: {type(e).__name__}")
            continue
        cub = k.asm["cubin"]
        ops = opcodes(cub)
        regs, smem = registers(cub), k.metadata.shared
        by_regs, by_smem = 65536 // (regs * 32 * w), 233472 // max(smem, 1)
        print(f"{name:20s} {bm:4d} {bn:4d} w{w} s{st}: regs {regs:3d} smem {smem:6d} "
              f"spills {ops['STL']:3d} programs/SM {min(by_regs, by_smem, 32 // w)} "
              f"(regs {by_regs}, smem {by_smem})", flush=True)
