"""Micro-benchmark (next device session, ~30 s): `layer_norm_linear` against the Triton
LayerNorm then F.linear (what the model runs without it), bf16, in CUDA graphs, at the
evaluation's shapes; then, for the 1,024-column projections it loses at with its default
launch (twentieth session: 1.29x at K = 128, 1.65x at K = 256), a sweep of launches
(rows a program, warps, columns a step, stages); then the triangle multiplication's output
with its gate (and the residual pair stream) in the epilogue against the kernel and separate passes.
Run from the repository root: python3 .devsnap/mb_ln2.py (after source scripts/gpu_env.sh)."""
import itertools

import torch
import torch.nn.functional as F

from scalefold.kernels.layer_norm import layer_norm as tln
from scalefold.kernels.ln_linear import LnLinearLaunch, layer_norm_linear

dev = "cuda"
torch.manual_seed(0)


class Norm(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c, self.eps = c, 1e-5
        self.weight = torch.nn.Parameter(torch.randn(c, device=dev))
        self.bias = torch.nn.Parameter(torch.randn(c, device=dev))


def timed(fn, n=20):
    """Microseconds a call: n calls captured in one CUDA graph, 5 replays."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(n):
            fn()
    g.replay()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(True), torch.cuda.Event(True)
    a.record()
    for _ in range(5):
        g.replay()
    b.record()
    torch.cuda.synchronize()
    return a.elapsed_time(b) / (5 * n) * 1000


def case(m, k, n):
    x = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
    w = torch.randn(n, k, device=dev, dtype=torch.bfloat16) / k**0.5
    b = torch.randn(n, device=dev, dtype=torch.bfloat16)
    return x, Norm(k), w, b


with torch.no_grad():
    print(f"{'M':>8} {'K':>4} {'N':>5} {'fused us':>9} {'LN+mm us':>9} {'ratio':>6}")
    for m, k, n in [(224 * 224, 128, 512), (224 * 224, 128, 128), (224 * 224, 128, 4),
                    (224 * 224, 128, 1024), (124 * 224, 256, 1024), (124 * 224, 256, 64),
                    (1024 * 224, 64, 256), (1024 * 224, 64, 1024), (700 * 700, 128, 512),
                    (124 * 700, 256, 1024)]:
        x, nm, w, b = case(m, k, n)
        t1 = timed(lambda: layer_norm_linear(x, nm, w, b))
        t2 = timed(lambda: F.linear(tln(x, nm.weight, nm.bias, 1e-5), w, b))
        print(f"{m:>8} {k:>4} {n:>5} {t1:9.1f} {t2:9.1f} {t1 / t2:6.2f}")
    print("launch sweep at 1,024 columns (for_width halves block_n above 128 channels)")
    for m, k in [(224 * 224, 128), (124 * 224, 256), (124 * 700, 256)]:
        x, nm, w, b = case(m, k, 1024)
        ref = timed(lambda: F.linear(tln(x, nm.weight, nm.bias, 1e-5), w, b))
        rows = []
        for bm, warps, bn, stages in itertools.product((64, 128), (4, 8), (64, 128), (2, 3)):
            lc = LnLinearLaunch(bm, bn, warps, stages)
            try:
                t = timed(lambda: layer_norm_linear(x, nm, w, b, launch=lc))
            except Exception as e:  # out of shared memory or registers
                rows.append((float("inf"), lc, type(e).__name__))
                continue
            rows.append((t, lc, ""))
        rows.sort(key=lambda r: r[0])
        for t, lc, err in rows[:4]:
            print(f"  M={m} K={k}: {lc} {t:.1f} us ({t / ref:.2f}x LN+mm {ref:.1f} us) {err}")
    print("triangle multiplication output, 224 and 700 residues: LN(x) W + b, gated")
    for n_res in (224, 700):
        L = n_res * n_res
        xc = torch.randn(128, L, device=dev, dtype=torch.bfloat16)  # channels first
        nm = Norm(128)
        w = torch.randn(128, 128, device=dev, dtype=torch.bfloat16) / 11
        b = torch.randn(128, device=dev, dtype=torch.bfloat16)
        g = torch.randn(L, 128, device=dev, dtype=torch.bfloat16)
        t_gated = timed(lambda: layer_norm_linear(xc, nm, w, b, channels_first=True, gate=g))
        t_then = timed(lambda: layer_norm_linear(xc, nm, w, b, channels_first=True)
                       * torch.sigmoid(g))
        r = torch.randn(L, 128, device=dev)  # the fp32 pair stream
        t_res = timed(lambda: layer_norm_linear(xc, nm, w, b, channels_first=True, gate=g,
                                                residual=r))
        t_res_then = timed(lambda: r + layer_norm_linear(xc, nm, w, b, channels_first=True)
                           * torch.sigmoid(g))
        print(f"  {n_res}: gate in the epilogue {t_gated:.1f} us, kernel then x*sigmoid(g) "
              f"{t_then:.1f} us ({t_gated / t_then:.2f}x); gate and residual in the "
              f"epilogue {t_res:.1f} us, kernel then r + x*sigmoid(g) {t_res_then:.1f} us "
              f"({t_res / t_res_then:.2f}x)")
