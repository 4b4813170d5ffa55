"""Key block 32 against 64 with bias_mma across lengths (triangle folded, MSA row)."""
import torch

import scalefold.kernels.attention as a

src = open(".devsnap/mb_bias_mma.py").read().split("base = a.FlashConfig")[0]
ns = {}
exec(src, ns)
for n in range(32, 705, 16):
    for name, args in [("triangle", (n, 4, n, 32, False)), ("MSA row", (128, 8, n, 32, True))]:
        q, k, v, bs = ns["case"](*args)
        ts = []
        for L in [(64, 64, 4, 3), (64, 32, 4, 3), (64, 16, 4, 3), (64, 32, 4, 4)]:
            cfg = a.FlashConfig(fused_logits=True, unmasked_loads=True, bias_mma=True,
                                fwd=a.Launch(*L))
            ts.append(ns["timed"](lambda: a.flash_attention(q, k, v, bs, cfg)))
        print(f"{name:9s} {n:4d}  64x64w4s3 {ts[0]:7.4f}  64x32w4s3 {ts[1] / ts[0]:6.3f}  "
              f"64x32w4s4 {ts[2] / ts[0]:6.3f}  64x16w4s3 {ts[2] / ts[0]:6.3f} 64x32w4s4 {ts[3] / ts[0]:6.3f}", flush=True)
