# micro-benchmark: layer_norm_linear against LayerNorm then F.linear (bf16, no grad)
import torch, torch.nn.functional as F
from scalefold.kernels.ln_linear import layer_norm_linear
from scalefold.kernels.layer_norm import layer_norm as tln
torch.manual_seed(0)
dev = "cuda"
class N(torch.nn.Module):
    def __init__(s, c):
        super().__init__(); s.c = c; s.eps = 1e-5
        s.weight = torch.nn.Parameter(torch.randn(c, device=dev)); s.bias = torch.nn.Parameter(torch.randn(c, device=dev))
def t(fn, n=20):
    s = torch.cuda.Stream(); s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3): fn()
    torch.cuda.current_stream().wait_stream(s); torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(n): fn()
    g.replay(); torch.cuda.synchronize()
    a = torch.cuda.Event(True); b = torch.cuda.Event(True)
    a.record()
    for _ in range(5): g.replay()
    b.record(); torch.cuda.synchronize(); return a.elapsed_time(b) / (5 * n) * 1000
print(f"{'M':>8} {'K':>4} {'N':>5} {'fused us':>9} {'tLN+mm us':>9} {'ratio':>6} {'maxdiff':>8}")
with torch.no_grad():
    for m, k, n in [(224*224, 128, 512), (224*224, 128, 128), (224*224, 128, 4), (224*224, 128, 1024),
                    (124*224, 256, 1024), (124*224, 256, 64), (1024*224, 64, 256), (1024*224, 64, 256*4),
                    (700*700, 128, 512), (700*700, 128, 4)]:
        x = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
        w = torch.randn(n, k, device=dev, dtype=torch.bfloat16) / k**0.5
        bb = torch.randn(n, device=dev, dtype=torch.bfloat16)
        nm = N(k)
        lw, lb = nm.weight.bfloat16(), nm.bias.bfloat16()
        f1 = lambda: layer_norm_linear(x, nm, w, bb)
        f2 = lambda: F.linear(F.layer_norm(x, (k,), lw, lb, 1e-5), w, bb)
        f3 = lambda: F.linear(tln(x, nm.weight, nm.bias, 1e-5), w, bb)
        f4 = lambda: tln(x, nm.weight, nm.bias, 1e-5)
        d = (f1().float() - f2().float()).abs().max().item()
        t1, t2 = t(f1), t(f3); t4 = t(f4)
        print(f"{m:>8} {k:>4} {n:>5} {t1:9.1f} {t2:9.1f} {t1/t2:6.2f} {d:8.3g} LN {t4:7.1f}")
