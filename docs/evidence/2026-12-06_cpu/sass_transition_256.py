"""sm90 compiles of `_transition_fwd` at the MSA transition's width (c = 256) for a few
launches, without a GPU (twenty-second session): registers, spill stores, HGMMA count,
shared memory. Usage: python docs/evidence/2026-12-06_cpu/sass_transition_256.py"""
import scalefold.kernels.fused_transition as ft
from scalefold.bench.sass import compile_signature, opcodes, registers

POINTERS = {"X": "bf16", "LW": "fp32", "LB": "fp32", "W1": "bf16", "B1": "bf16",
            "W2": "bf16", "B2": "bf16", "R": "bf16", "Y": "bf16"}
for bm, bh, warps, stages in [(64, 64, 8, 2), (64, 64, 8, 3), (64, 32, 8, 2), (32, 64, 4, 2),
                              (64, 64, 4, 2), (128, 32, 8, 2)]:
    k = compile_signature(ft._transition_fwd, dict(C=256, BM=bm, BH=bh, PREC="tf32"),
                          POINTERS, warps=warps, stages=stages)
    ops = opcodes(k.asm["cubin"])
    print(f"rows {bm:3d} hidden {bh:3d} warps {warps} stages {stages}: "
          f"{registers(k.asm['cubin'])} registers, {ops['STL']} spill stores, "
          f"{ops['HGMMA']} HGMMA, {k.metadata.shared} bytes of shared memory")
