# Run from the repository root with the venv: python docs/evidence/2026-12-06_cpu/sass_trimul_projection.py
"""sm90 compile of the projection-gating kernel (trimul_projection_forward_kernel) with and
without its input LayerNorm, on a CPU: registers, shared memory, spills."""
import collections, re
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
import triton
import scalefold.kernels.trimul_projection as T
from scalefold.bench.sass import registers, disassemble
fn = T._projection_gating_fwd
def comp(norm, zdt):
    const = dict(K=128, BC=64, BL=64, NORM=norm, PREC="tf32")
    ptr = {"Z": zdt, "LW": "fp32", "LB": "fp32", "W": "bf16", "BIAS": "bf16", "M": "bf16", "OUT": "bf16"}
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
    k = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=dict(num_warps=4, num_stages=2))
    cub = k.asm["cubin"]
    sass = disassemble(cub)
    ops = collections.Counter(m.group(1).split(".")[0] for m in re.finditer(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]+)", sass))
    print(f"NORM={norm} z {zdt}: regs {registers(cub)}, smem {k.metadata.shared} B, HGMMA {ops['HGMMA']}, HMMA {ops['HMMA']}, LDL {ops['LDL']}, STL {ops['STL']}, LDG {ops['LDG']}, instructions {sum(ops.values())}")
comp(False, "bf16")
comp(True, "bf16")
comp(True, "fp32")
