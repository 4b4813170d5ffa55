"""Why the evaluation's compiled triangle-multiplication gating takes 97 us a call at 224
residues on the H100 (~23 us of memory traffic; perf-log 2026-12-05 section 10): the
same `h200`-swapped module compiled with dynamic shapes (as the evaluation copy is) and
with static ones, timed side by side without gradients, and the dynamic kernel's index
arithmetic printed (a division by a symbolic N*N per element is the suspect).
Usage (a GPU): python3 docs/evidence/2026-12-05_h100_s4/trimul_gating_probe.py [N ...]"""

import copy
import dataclasses
import statistics
import sys

import torch
from torch._inductor.utils import run_and_get_code

from scalefold.kernels import apply_speedups
from scalefold.model.pair import TriangleMultiplication
from scalefold.train.config import SpeedConfig

dev = "cuda" if torch.cuda.is_available() else "cpu"
speed = dataclasses.replace(SpeedConfig.preset("h200"), compile_glue=False,
                            compile_structure_module=False, cached_weight_casts=False)
torch.manual_seed(0)
base = TriangleMultiplication(128, 128, outgoing=True).to(dev).eval()
apply_speedups(base, speed, "bf16")
mods = {}
for name, dyn, in_gating in (("dynamic", True, True), ("static", False, True),
                             ("dynamic, baddbmm", True, False),
                             ("static, baddbmm", False, False)):
    m = copy.deepcopy(base)
    m.bias_in_gating = in_gating
    m.compile(dynamic=dyn)
    mods[name] = m


def timed(fn, reps=20):
    if dev != "cuda":
        fn()
        return float("nan")
    for _ in range(3):
        fn()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        ts.append(a.elapsed_time(b))
    return statistics.median(ts)


for n in [int(a) for a in sys.argv[1:]] or [224, 448]:
    z = torch.randn(1, n, n, 128, device=dev).to(torch.bfloat16)
    mask = torch.ones(1, n, n, device=dev)
    with torch.no_grad(), torch.autocast(dev, dtype=torch.bfloat16):
        ref = base(z, mask)
        for name, m in mods.items():
            out, code = run_and_get_code(m, z, mask)
            err = (out.float() - ref.float()).abs().max().item()
            ms = timed(lambda m=m: m(z, mask))
            print(f"N={n} {name}: {ms:.3f} ms a call, max |diff| vs eager {err:.3g}")
            src = "\n".join(code)
            calls = sorted({ln.strip().split("(")[0] for ln in src.splitlines()
                            if "extern_kernels." in ln})
            print(f"  {name}: extern calls {calls}; reduction loops: "
                  f"{src.count('r0_offset') + src.count('roffset')}")
            if name == "dynamic":
                for block in src.split("@triton.jit")[1:]:
                    if "sigmoid" in block:
                        lines = [ln.strip() for ln in block.splitlines()
                                 if any(t in ln for t in ("def ", "index", " // ", " % ",
                                                          "int64", "xnumel", "rnumel", "r0_numel",
                                                          "tl.sum", "tl.dot"))]
                        print("  gating kernel (dynamic):\n    " + "\n    ".join(lines[:40]))
                        break
        if dev == "cuda":
            from torch.profiler import ProfilerActivity, profile
            for name, m in mods.items():
                with profile(activities=[ProfilerActivity.CUDA]) as prof:
                    for _ in range(5):
                        m(z, mask)
                    torch.cuda.synchronize()
                rows = sorted(((e.device_time_total / 5, e.key) for e in prof.key_averages()
                               if e.device_time_total > 0), reverse=True)[:6]
                print(f"  N={n} {name} kernels (us a call): "
                      + "; ".join(f"{k[:60]} {t:.1f}" for t, k in rows))
