"""Micro-benchmark (device, ~2 min): the fused transition (`transition_forward_kernel`)
against the path today's h200 evaluation runs (the LayerNorm-projection kernel's hidden
layer with its ReLU, cuBLAS for linear_2, then the residual add), bf16 stream and
weights, CUDA graphs (`time_call`), with a sweep of the kernel's launches.

Shapes: the pair transition at 224 and 704 residues (M = N², c = 128, 512 hidden), the
extra-MSA transition at 224 and 704 (M = 1024·N, c = 64, 256 hidden), the template pair
transition at 704 (M = 4·N², c = 64, 128 hidden), and (twenty-second session) the MSA
transition at 224 and 704 (M = 128·N, c = 256, 1,024 hidden: over `MAX_WIDTH`, so
today's path is the LayerNorm kernel, cuBLAS with the ReLU epilogue, cuBLAS, the add;
raise `MAX_WIDTH` to 256 if the kernel wins there).
Usage: python3 mb_transition.py
"""
import copy

import torch

from scalefold.bench._kernel_bench import time_call
from scalefold.kernels.fused_transition import TransitionLaunch, transition_forward
from scalefold.kernels.ln_linear import NormFusedTransition
from scalefold.kernels.swap import swap
from scalefold.kernels import apply_kernels
from scalefold.kernels.transition import swap_transitions
from scalefold.model.msa import Transition

DEV = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # CPU: a smoke test
LAUNCHES = [TransitionLaunch(bm, bh, w, s) for bm, w in ((128, 8), (64, 4), (128, 4))
            for bh in (32, 64, 128) for s in (2, 3)]
# c = 256: `for_width` makes a 4-warp launch 8 warps, 2 stages; these are the wide ones
WIDE = [TransitionLaunch(bm, bh, 8, s) for bm in (32, 64) for bh in (32, 64)
        for s in (2, 3)]


def fused_default(rows, c):
    want = TransitionLaunch().for_width(c)
    return next((r[0] for r in rows if r[1] == want), float("nan"))


def case(name, m, c, n):
    torch.manual_seed(0)
    t = Transition(c, n).to(DEV).eval()
    with torch.no_grad():
        for p in t.parameters():
            p.normal_(0, 0.1)
    apply_kernels(t, layer_norm="triton", layer_norm_output="compute")
    today = copy.deepcopy(t)
    swap_transitions(today)  # the evaluation's order (`apply_speedups`): epilogue, then
    swap(today, Transition, NormFusedTransition)  # the LayerNorm-projection kernel
    x = torch.randn(m, c, device=DEV).bfloat16()
    w1, b1 = t.linear_1.weight.bfloat16(), t.linear_1.bias.bfloat16()
    w2, b2 = t.linear_2.weight.bfloat16(), t.linear_2.bias.bfloat16()

    def ref():
        with torch.no_grad(), torch.autocast(DEV.type, dtype=torch.bfloat16):
            return x + today(x)

    base = time_call(ref, 2, 20, DEV)
    want = ref()
    rows = []
    for la in (WIDE if c > 128 else LAUNCHES):
        if (n * c) % la.block_hidden:
            continue
        def fused(la=la):
            with torch.no_grad():
                return transition_forward(x, t.layer_norm, w1, b1, w2, b2, x, la)
        try:
            got = fused()
            err = ((got.float() - want.float()).norm() / want.float().norm()).item()
            rows.append((time_call(fused, 2, 20, DEV), la, err))
        except Exception as e:  # a launch that does not fit (shared memory, registers)
            print(f"  {name} {la}: {type(e).__name__}: {str(e)[:80]}")
    rows.sort(key=lambda r: r[0])
    best = rows[0]
    print(f"{name:28s} M={m:8d} c={c:3d} hidden={n * c:4d}: today {base * 1e6:8.1f} us; "
          f"fused default {fused_default(rows, c) * 1e6:8.1f} us; "
          f"best {best[0] * 1e6:8.1f} us ({best[0] / base:.2f}x) {best[1]}; rel err {best[2]:.1e}")
    for s, la, err in rows[:4]:
        print(f"    {s * 1e6:8.1f} us {la}")


print(torch.cuda.get_device_name() if DEV.type == "cuda" else "cpu", torch.__version__)
if DEV.type == "cpu":  # TRITON_INTERPRET=1: the code path only (the interpreter's bf16 dot is wrong)
    LAUNCHES[:] = [TransitionLaunch()]
    case("smoke", 300, 64, 2)
    raise SystemExit
case("pair 224", 224 * 224, 128, 4)
case("pair 704", 704 * 704, 128, 4)
case("extra MSA 224", 1024 * 224, 64, 4)
case("extra MSA 704", 1024 * 704, 64, 4)
case("template pair 704", 4 * 704 * 704, 64, 2)
case("MSA 224", 128 * 224, 256, 4)
case("MSA 704", 128 * 704, 256, 4)
