"""sm90 compiles of the nineteenth session's kernels on a CPU (no GPU): registers, shared
memory, instruction counts. Run from the repository root with the venv: python
docs/evidence/2026-12-06_cpu/sass_kernels.py"""
import collections, re
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
import triton
import scalefold.kernels.ln_linear as L
from scalefold.bench.sass import registers, disassemble, mma_loops
fn = L._ln_linear_fwd
def comp(K, BN, warps, stages, BM=64, relu=False, bias=True, unit=("sxk", "syn", "sgn", "srn"), gate=False, residual=False, norm=True):
    const = dict(HAS_BIAS=bias, RELU=relu, GATE=gate, RESIDUAL=residual, NORM=norm, BM=BM, BK=K, BN=BN, PREC="tf32")
    sig, vals, attrs = {}, {}, {}
    ptr = {"X": "bf16", "LW": "fp32", "LB": "fp32", "W": "bf16", "BIAS": "bf16", "Y": "fp32" if residual else "bf16", "G": "bf16", "R": "fp32"}
    for p in fn.params:
        if p.is_constexpr:
            sig[p.name] = "constexpr"; vals[(p.num,)] = const[p.name]
        elif p.name in ptr:
            sig[p.name] = "*" + ptr[p.name]; attrs[(p.num,)] = [["tt.divisibility", 16]]
        elif p.name == "eps":
            sig[p.name] = "fp32"
        elif p.name in unit:
            sig[p.name] = "constexpr"; vals[(p.num,)] = 1
        elif p.name == "K":
            sig[p.name] = "constexpr"; vals[(p.num,)] = K
        else:
            sig[p.name] = "i32"; attrs[(p.num,)] = [["tt.divisibility", 16]]
    src = ASTSource(fn=fn, signature=sig, constexprs=vals, attrs=attrs)
    k = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=dict(num_warps=warps, num_stages=stages))
    cub = k.asm["cubin"]
    sass = disassemble(cub)
    ops = collections.Counter(m.group(1).split(".")[0] for m in re.finditer(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]+)", sass))
    print(f"unit strides {unit}{' gated' if gate else ''}{' +residual' if residual else ''}{'' if norm else ' no LayerNorm'}: K={K} BM={BM} BN={BN} warps={warps} stages={stages}: regs {registers(cub)}, smem {k.metadata.shared} B, HGMMA {ops['HGMMA']}, HMMA {ops['HMMA']}, LDL {ops['LDL']}, STL {ops['STL']}, LDGSTS {ops['LDGSTS']}, LDG {ops['LDG']}")
for args in [(128, 128, 4, 2), (256, 64, 4, 2), (128, 16, 4, 2)]:
    comp(*args)
comp(128, 128, 4, 2, unit=("sxm", "syn"))  # channels-first input
comp(128, 128, 4, 2, unit=("sxk", "sym"))  # channels-first output
comp(128, 128, 4, 2, unit=("sxm", "syn", "sgn", "srn"), gate=True)  # (20th session) the triangle multiplication's output with its gate
comp(128, 128, 4, 2, unit=("sxm", "syn", "sgn", "srn"), gate=True, residual=True)  # (20th session) ... and the fp32 pair stream added
comp(128, 64, 4, 2, unit=("sxm", "syn", "sgn", "srn"), gate=True, residual=True)  # ... at 64 columns a step, what _launch takes with a residual
comp(256, 64, 4, 2, unit=("sxk", "syn", "sgn", "srn"), residual=True, norm=False)  # linear_epilogue: the MSA attentions' output projection with the residual
comp(128, 64, 4, 2, unit=("sxk", "syn", "sgn", "srn"), residual=True, norm=False)  # ... the triangle attentions'
# the attention forward (no log-sum-exp, fused logits, unmasked loads) without and with the gate
from scalefold.bench.sass import attention_cases, compile_kernel
import dataclasses
base = attention_cases()[0]
for gated in (False, True):
    c = dataclasses.replace(base, constexprs=dict(base.constexprs, GATED=gated))
    k = compile_kernel(c, "fused+unmasked")
    sass = disassemble(k.asm["cubin"])
    ops = collections.Counter(m.group(1).split(".")[0] for m in re.finditer(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]+)", sass))
    print(f"_attn_fwd GATED={gated}: instructions {sum(ops.values())}, regs {registers(k.asm['cubin'])}, LDL {ops['LDL']}, STL {ops['STL']}, MUFU {ops['MUFU']}")
