"""sm90 compiles (no GPU) of the outer product mean's projection kernel `_opm_proj_fwd`
without and with its residual epilogue (`opm_residual_epilogue`), bf16 product and
weights, the float32 pair stream; and of the LayerNorm-projection kernel's per-call
launches (`ln_linear.launch_for`): registers, spill stores, shared memory.
Run: cd implementations/pytorch && python ../../docs/evidence/2026-12-06_cpu/sass_opm_epilogue_s24.py"""
import re

from scalefold.bench.sass import compile_signature, disassemble, registers
from scalefold.kernels import ln_linear
from scalefold.kernels.opm import _opm_proj_fwd


def report(name, c):
    sass = disassemble(c.asm["cubin"])
    spills = len(re.findall(r"\bSTL\b", sass))
    print(f"{name:58s} {registers(c.asm['cubin']):4d} registers, {spills:3d} spill stores, "
          f"{c.metadata.shared // 1024:4d} KiB shared, {sass.count('HGMMA')} HGMMA")


for epi in (False, True):
    c = compile_signature(
        _opm_proj_fwd, {"CE": 1024, "E": 32, "BLOCK_J": 64, "BLOCK_Z": 128, "BLOCK_K": 128,
                        "PREC": "ieee", "EPILOGUE": epi},
        {"X": "bf16", "W": "bf16", "B": "bf16", "OUT": "fp32" if epi else "bf16",
         "DEN": "bf16", "RES": "fp32"}, warps=4, stages=2)
    report(f"_opm_proj_fwd c*e=1024 c_z=128 epilogue={epi}", c)

calls = [("q/k/v/g K128 N512", 128, 512, False, False, True),
         ("attention out + residual K128 N128", 128, 128, False, True, False),
         ("trimul out gate + residual K128 N128", 128, 128, True, True, True),
         ("MSA out + residual K256 N256", 256, 256, False, True, False)]
for name, k, n, gate, res, norm in calls:
    for label, lc in (("default", ln_linear.DEFAULT_LAUNCH),
                      ("launch_for", ln_linear.launch_for(n, gate, res))):
        lc = lc.for_width(k)
        bn = min(lc.block_n, 64) if res else lc.block_n
        c = compile_signature(
            ln_linear._ln_linear_fwd,
            {"HAS_BIAS": True, "RELU": False, "GATE": gate, "RESIDUAL": res, "NORM": norm,
             "BM": lc.block_m, "BK": k, "BN": bn, "PREC": "ieee"},
            {"X": "bf16", "LW": "bf16", "LB": "bf16", "W": "bf16", "BIAS": "bf16",
             "G": "bf16", "R": "fp32", "Y": "fp32" if res else "bf16"},
            warps=lc.warps, stages=lc.stages)
        report(f"ln_linear {name} {label} {lc.block_m}x{bn} w{lc.warps} s{lc.stages}", c)
