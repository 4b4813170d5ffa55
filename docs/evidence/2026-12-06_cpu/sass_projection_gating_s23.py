"""sm90 compiles of `_projection_gating_fwd` at K = 128 (fp32 stream, bf16 weights, the input
LayerNorm in the kernel): today's one-block form and the loop form (`groups_in_loop`) at
a few launches, without a GPU (twenty-third session): registers, shared memory, spills,
programs a multiprocessor. Usage: python docs/evidence/2026-12-06_cpu/sass_projection_gating_s23.py"""
import itertools

import scalefold.kernels.trimul_projection as T
from scalefold.bench.sass import compile_signature, opcodes, registers

P = {"Z": "fp32", "LW": "fp32", "LB": "fp32", "W": "bf16", "BIAS": "bf16", "M": "fp32",
     "OUT": "bf16"}
for loop, bl, w, st in [(False, 64, 4, 1)] + list(itertools.product((True,), (64, 128), (4, 8),
                                                                      (1, 2, 3))):
    k = compile_signature(T._projection_gating_fwd,
                          dict(K=128, BC=64, BL=bl, NORM=True, PREC="tf32", GROUPS_IN_LOOP=loop),
                          P, warps=w, stages=st)
    cub = k.asm["cubin"]
    ops = opcodes(cub)
    regs, smem = registers(cub), k.metadata.shared
    per_sm = min(65536 // (regs * 32 * w), 233472 // smem, 64 // w)
    print(f"loop={int(loop)} BL={bl:3d} w{w} s{st}: regs {regs:3d} smem {smem:6d} spills "
          f"{ops['STL']:3d} programs/SM {per_sm} HGMMA {ops['HGMMA']} LDGSTS {ops['LDGSTS']} "
          f"LDG {ops['LDG']}")
