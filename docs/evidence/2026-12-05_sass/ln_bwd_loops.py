import collections, re, sys
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
import triton
from scalefold.kernels.layer_norm import _ln_bwd
from scalefold.bench.sass import registers, disassemble
def comp(fn, ptrs, cons, warps, stages, ints=()):
    sig = {}; vals = {}; attrs = {}
    for p in fn.params:
        if p.is_constexpr: sig[p.name] = "constexpr"; vals[(p.num,)] = cons[p.name]
        elif p.name in ptrs: sig[p.name] = "*" + ptrs[p.name]; attrs[(p.num,)] = [["tt.divisibility", 16]]
        else:
            sig[p.name] = "i32"
            if p.name in ints: attrs[(p.num,)] = [["tt.divisibility", 16]]
    return triton.compile(ASTSource(fn=fn, signature=sig, constexprs=vals, attrs=attrs), target=GPUTarget("cuda", 90, 32), options={"num_warps": warps, "num_stages": stages})
OP = re.compile(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]+)")
for bm, w, st, stream in [(64, 4, 1, False), (16, 4, 1, False), (16, 4, 1, True), (32, 4, 1, True), (8, 4, 1, True)]:
    k = comp(_ln_bwd, {"X":"bf16","W":"fp32","DY":"bf16","DX":"bf16","MEAN":"fp32","RSTD":"fp32","DW_PART":"fp32","DB_PART":"fp32"}, {"BLOCK_M": bm, "BLOCK_C": 128, "STREAM": stream}, w, st, ints=("M","C"))
    ops = collections.Counter(m.group(1).split(".")[0] for m in OP.finditer(disassemble(k.asm["cubin"])))
    print(bm, w, st, stream, "regs", registers(k.asm["cubin"]), "smem", k.metadata.shared, {o: ops[o] for o in ("LDG","LDGSTS","STG","BAR","SHFL","STS","LDS")}, "total", sum(ops.values()))
print("loop bodies:")
from scalefold.bench import sass as S
def loops(text):
    lines = text.splitlines()
    labels = {m.group(1): i for i, line in enumerate(lines) if (m := S._LABEL.match(line))}
    out = []
    for i, line in enumerate(lines):
        m = S._BRANCH.search(line)
        if not m or labels.get(m.group(1), i) >= i: continue
        ops = [o.group(1).split(".")[0] for body in lines[labels[m.group(1)]:i + 1] if (o := S._OPCODE.search(body))]
        out.append(collections.Counter(ops))
    return out
for bm, w, stream in [(64, 4, False), (16, 4, False), (16, 4, True), (8, 4, True)]:
    k = comp(_ln_bwd, {"X":"bf16","W":"fp32","DY":"bf16","DX":"bf16","MEAN":"fp32","RSTD":"fp32","DW_PART":"fp32","DB_PART":"fp32"}, {"BLOCK_M": bm, "BLOCK_C": 128, "STREAM": stream}, w, 1, ints=("M","C"))
    ls = loops(disassemble(k.asm["cubin"]))
    big = max(ls, key=lambda c: sum(c.values())) if ls else collections.Counter()
    print(bm, w, stream, "loop instr", sum(big.values()), {o: big[o] for o in ("LDG","STG","BAR","SHFL","STS","LDS")}, "per row-element", round(sum(big.values()) * w * 32 / (bm * 128), 2))
