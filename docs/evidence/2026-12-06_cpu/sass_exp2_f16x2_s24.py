import triton, triton.language as tl
from scalefold.bench.sass import compile_signature
import re

@triton.jit
def k32(X, Y, BLOCK: tl.constexpr):
    o = tl.arange(0, BLOCK)
    x = tl.load(X + o)
    tl.store(Y + o, tl.math.exp2(x))

@triton.jit
def k16(X, Y, BLOCK: tl.constexpr):
    o = tl.arange(0, BLOCK)
    x = tl.load(X + o).to(tl.float16)
    tl.store(Y + o, tl.math.exp2(x).to(tl.float32))

@triton.jit
def kasm(X, Y, BLOCK: tl.constexpr):
    o = tl.arange(0, BLOCK)
    x = tl.load(X + o).to(tl.float16)
    p = tl.inline_asm_elementwise("ex2.approx.f16x2 $0, $1;", "=r,r", [x], dtype=tl.float16, is_pure=True, pack=2)
    tl.store(Y + o, p.to(tl.float32))


import collections
from scalefold.bench.sass import disassemble
for fn in (k32, kasm):
    c = compile_signature(fn, {"BLOCK": 1024}, {"X": "fp32", "Y": "fp32"})
    ptx = c.asm["ptx"]
    print(fn.__name__, sorted(set(re.findall(r"\b(ex2[\w.]*)", ptx))))
    d = disassemble(c.asm["cubin"])
    print("  ", collections.Counter(re.findall(r"MUFU\.[\w.]+", d)), collections.Counter(re.findall(r"F2FP\.[\w.]+|F2F\.[\w.]+|HADD2\.[\w.]+|HMUL2[\w.]*", d)))
