"""sm90 compiles (no GPU) of the twenty-first session's kernels: registers, shared memory,
spills, tensor-core instructions. Run from the repository root with the venv:
python docs/evidence/2026-12-06_cpu/sass_kernels_s21.py"""
import triton

import scalefold.kernels.fused_transition as FT
import scalefold.kernels.trimul_projection as TP
from scalefold.bench.sass import compile_signature, opcodes, registers


def show(label, kernel):
    cub = kernel.asm["cubin"]
    ops = opcodes(cub)
    print(f"{label}: regs {registers(cub)}, smem {kernel.metadata.shared} B, HGMMA "
          f"{ops['HGMMA']}, HMMA {ops['HMMA']}, LDL {ops['LDL']}, STL {ops['STL']}, "
          f"instructions {sum(ops.values())}")


print(f"Triton {triton.__version__}, sm_90")
# trimul_projection_forward_kernel: 64 channels x 64 positions, K = 128, 4 warps, without
# and with its input LayerNorm (the raw stream in bf16 or fp32)
for norm, zdt in ((False, "bf16"), (True, "bf16"), (True, "fp32")):
    k = compile_signature(TP._projection_gating_fwd, dict(K=128, BC=64, BL=64, NORM=norm,
                                                          PREC="tf32"),
                          {"Z": zdt, "LW": "fp32", "LB": "fp32", "W": "bf16", "BIAS": "bf16",
                           "M": "bf16", "OUT": "bf16"})
    show(f"projection-gating NORM={norm} z {zdt}", k)
# transition_forward_kernel: the pair transition (c = 128, 512 hidden) and the extra-MSA
# one (c = 64) at several launches; the default is 128 rows, 64 hidden a step, 8 warps
for c, zdt, bm, bh, warps, stages in ((128, "bf16", 128, 64, 8, 2), (128, "fp32", 128, 64, 8, 2),
                                      (64, "bf16", 128, 64, 8, 2), (128, "bf16", 64, 64, 4, 2),
                                      (128, "bf16", 128, 32, 8, 2), (128, "bf16", 128, 64, 8, 3)):
    k = compile_signature(FT._transition_fwd, dict(C=c, BM=bm, BH=bh, PREC="tf32"),
                          {"X": zdt, "LW": "fp32", "LB": "fp32", "W1": "bf16", "B1": "bf16",
                           "W2": "bf16", "B2": "bf16", "R": zdt, "Y": zdt},
                          warps=warps, stages=stages)
    show(f"transition c={c} stream {zdt} BM={bm} BH={bh} warps={warps} stages={stages}", k)
