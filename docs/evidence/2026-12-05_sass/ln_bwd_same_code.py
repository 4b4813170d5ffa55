# The LayerNorm backward's default launch (64 rows, 128 channels, bf16, 4 warps) compiled
# for sm90 from the source before the streaming form (27b6a95) and from the checkout's:
# registers and opcode counts. Run from the repository root with Triton 3.6 on PYTHONPATH
# as in README.md: python docs/evidence/2026-12-05_sass/ln_bwd_same_code.py
import collections
import importlib.util
import re
import subprocess
import sys
import tempfile

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from scalefold.bench.sass import disassemble, registers
from scalefold.kernels import layer_norm as new

path = tempfile.mkdtemp() + "/ln_old.py"
with open(path, "w") as f:
    f.write(subprocess.run(["git", "show", "27b6a95:implementations/pytorch/scalefold/kernels/"
                            "layer_norm.py"], capture_output=True, text=True, check=True).stdout)
spec = importlib.util.spec_from_file_location("ln_old", path)
old = importlib.util.module_from_spec(spec)
sys.modules["ln_old"] = old
spec.loader.exec_module(old)

PTRS = {"X": "bf16", "W": "fp32", "DY": "bf16", "DX": "bf16", "MEAN": "fp32", "RSTD": "fp32",
        "DW_PART": "fp32", "DB_PART": "fp32"}
OPCODE = re.compile(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]+)")

for name, fn, extra in (("before", old._ln_bwd, {}), ("now", new._ln_bwd, {"STREAM": False})):
    cons = {"BLOCK_M": 64, "BLOCK_C": 128, **extra}
    sig, vals, attrs = {}, {}, {}
    for p in fn.params:
        if p.is_constexpr:
            sig[p.name] = "constexpr"
            vals[(p.num,)] = cons[p.name]
        elif p.name in PTRS:
            sig[p.name] = "*" + PTRS[p.name]
            attrs[(p.num,)] = [["tt.divisibility", 16]]
        else:
            sig[p.name] = "i32"
            if p.name in ("M", "C"):
                attrs[(p.num,)] = [["tt.divisibility", 16]]
    k = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=vals, attrs=attrs),
                       target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
    ops = collections.Counter(m.group(1).split(".")[0]
                              for m in OPCODE.finditer(disassemble(k.asm["cubin"])))
    print(name, "registers", registers(k.asm["cubin"]), "instructions", sum(ops.values()),
          dict(sorted(ops.items())))
