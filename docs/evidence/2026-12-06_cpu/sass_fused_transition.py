# Run from the repository root with the venv: python docs/evidence/2026-12-06_cpu/sass_fused_transition.py
"""sm90 compiles of the fused transition (`transition_forward_kernel`) on a CPU: the pair
transition (c = 128, 512 hidden) and the extra-MSA one (c = 64, 256 hidden), 128 rows a
program, 64 hidden channels a step: registers, shared memory, spills."""
import collections, re
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
import triton
import scalefold.kernels.fused_transition as T
from scalefold.bench.sass import registers, disassemble
fn = T._transition_fwd
def comp(c, zdt, warps=8, bm=128, bh=64, stages=2):
    const = dict(C=c, BM=bm, BH=bh, PREC="tf32")
    ptr = {"X": zdt, "LW": "fp32", "LB": "fp32", "W1": "bf16", "B1": "bf16", "W2": "bf16", "B2": "bf16", "R": zdt, "Y": zdt}
    sig, vals, attrs = {}, {}, {}
    for p in fn.params:
        if p.is_constexpr:
            sig[p.name] = "constexpr"; vals[(p.num,)] = const[p.name]
        elif p.name in ptr:
            sig[p.name] = "*" + ptr[p.name]; attrs[(p.num,)] = [["tt.divisibility", 16]]
        elif p.name == "eps":
            sig[p.name] = "fp32"
        else:
            sig[p.name] = "i32"; attrs[(p.num,)] = [["tt.divisibility", 16]]
    src = ASTSource(fn=fn, signature=sig, constexprs=vals, attrs=attrs)
    k = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=dict(num_warps=warps, num_stages=stages))
    cub = k.asm["cubin"]
    sass = disassemble(cub)
    ops = collections.Counter(m.group(1).split(".")[0] for m in re.finditer(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]+)", sass))
    print(f"c={c} stream {zdt} BM={bm} BH={bh} warps={warps} stages={stages}: regs {registers(cub)}, smem {k.metadata.shared} B, HGMMA {ops['HGMMA']}, HMMA {ops['HMMA']}, LDL {ops['LDL']}, STL {ops['STL']}, instructions {sum(ops.values())}")
comp(128, "bf16")
comp(128, "fp32")
comp(64, "bf16")
comp(128, "bf16", warps=4, bm=64)
comp(128, "bf16", bh=32)
comp(128, "bf16", stages=3)
