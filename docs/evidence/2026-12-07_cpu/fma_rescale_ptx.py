"""sm90 PTX (compiled here, no GPU) of the attention forward's online-softmax rescale in
the evaluation's form (fused logits, unmasked loads, the bias tile as an MMA operand):
the instructions that compute alpha's exponent, i.e. those feeding the ex2 of
attention.py's `alpha = tl.exp2(...)` line."""
import re
import sys
import warnings

from scalefold.bench import sass

warnings.filterwarnings("ignore")
case = {c.name: c for c in sass.attention_cases()}["fwd, tile only (folded mask)"]
ptx = sass.compile_kernel(case, "fused+unmasked+bias_mma").asm["ptx"]
src = open("implementations/pytorch/scalefold/kernels/attention.py").read().splitlines()
alpha_line = next(i + 1 for i, ln in enumerate(src) if "alpha = tl.exp2(" in ln)
print(f"attention.py:{alpha_line}: {src[alpha_line - 1].strip()}")
block, keep = [], False
for ln in ptx.splitlines():
    m = re.search(r"\.loc\s+1 (\d+) ", ln)
    if m:
        keep = int(m.group(1)) == alpha_line
        continue
    if keep and not ln.strip().startswith("$"):
        block.append(ln.strip())
print("\n".join(block))
print("fma with log2e in the rescale:", any("fma" in b and "0f3FB8AA3B" in b for b in block))
