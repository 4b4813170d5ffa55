import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
import scalefold.kernels.optimizer as o
print("triton", triton.__version__)
def sig(fn, types, consts):
    s, v = {}, {}
    for p in fn.params:
        if p.is_constexpr:
            s[p.name] = "constexpr"; v[(p.num,)] = consts[p.name]
        else:
            s[p.name] = types[p.name]
    return ASTSource(fn=fn, signature=s, constexprs=v)
t1 = {"GRADS": "*i64", "NUMEL": "*i64", "BLK_T": "*i32", "BLK_S": "*i64", "PART": "*fp32"}
k1 = triton.compile(sig(o._sumsq_kernel, t1, {"BLOCK": 4096}), target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
t2 = {"PARAMS": "*i64", "GRADS": "*i64", "EXP_AVG": "*i64", "EXP_AVG_SQ": "*i64", "SHADOW": "*i64",
      "NUMEL": "*i64", "BLK_T": "*i32", "BLK_S": "*i64", "SUMSQ": "*fp32", "BAD": "*i32",
      "BIAS_CORR": "*fp32", "LR_PTR": "*fp32", "lr_value": "fp32", "beta1": "fp32", "beta2": "fp32",
      "eps": "fp32", "max_norm": "fp32", "ema_weight": "fp32"}
for lr_dev in (True, False):
    k2 = triton.compile(sig(o._update_kernel, t2, {"BLOCK": 4096, "LR_ON_DEVICE": lr_dev}), target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
    ptx = k2.asm["ptx"]
    print("update LR_ON_DEVICE", lr_dev, "ok; div.rn", ptx.count("div.rn.f32"), "sqrt.rn", ptx.count("sqrt.rn.f32"), "div.full", ptx.count("div.full"), "sqrt.approx", ptx.count("sqrt.approx"))
print("sumsq ok", len(k1.asm["cubin"]))
