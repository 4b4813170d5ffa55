"""sm90 compiles of `_attn_fwd_rows2` (two rows a program sharing the bias tile) at the
default launch (64 x 64, 4 warps, 3 stages, head dimension 32), the folded mask's one tile
and a mask row beside it, with and without the gate, without a GPU (twenty-third
session). Usage: python docs/evidence/2026-12-06_cpu/sass_rows2_s23.py"""
import scalefold.kernels.attention as A
from scalefold.bench import sass as S

tiles = dict(SCALE_Q=True, BQ=64, BK=64, BD=32, BDV=32, PREC="tf32")
for name, extra in [("tile only", dict(HAS_B0=False, HAS_B1=True, B0_ROW=False, B1_ROW=False,
                                       B0_MMA=False, B1_MMA=True)),
                    ("row + tile", dict(HAS_B0=True, HAS_B1=True, B0_ROW=True, B1_ROW=False,
                                        B0_MMA=False, B1_MMA=True))]:
    for gated in (False, True):
        k = S.compile_signature(A._attn_fwd_rows2, dict(extra, EVEN_D=True, GATED=gated, **tiles),
                                S._POINTERS, 90, 4, 3, floats=("q_scale",), unit=S._UNIT_STRIDES,
                                not_aligned=S._NOT_ALIGNED + ("Z",))
        cub = k.asm["cubin"]
        loop = max(S.mma_loops(S.disassemble(cub)), key=lambda c: sum(c.values()))
        ops = S.opcodes(cub)
        n = sum(loop.values())
        print(f"{name:10s} gated={gated}: loop {n} instructions ({n / 2:.0f} a row), "
              f"registers {S.registers(cub)}, shared {k.metadata.shared}, spills {ops['STL']}, "
              f"loop HGMMA {loop['HGMMA']} LDG {loop['LDG']} LDGSTS {loop['LDGSTS']} STS {loop['STS']}")
