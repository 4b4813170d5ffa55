"""The forward's launch with the bias tile as an MMA operand (bias_mma): a small sweep at
the triangle attention (folded mask, 704 and 224 residues) and MSA row attention (704)."""
import importlib.util
import sys

import torch

import scalefold.kernels.attention as a

spec = importlib.util.spec_from_file_location("mb", ".devsnap/mb_bias_mma.py")
launches = [(64, 64, 4, 3), (64, 64, 4, 4), (64, 64, 4, 2), (64, 128, 4, 3), (64, 32, 4, 3),
            (128, 64, 8, 3), (128, 64, 8, 2), (128, 32, 8, 3), (64, 128, 8, 3)]
sys.argv = ["x"]
src = open(".devsnap/mb_bias_mma.py").read().split("base = a.FlashConfig")[0]
ns = {}
exec(src, ns)
for name, args in [("triangle 704", (704, 4, 704, 32, False)), ("triangle 224", (224, 4, 224, 32, False)),
                   ("MSA row 704", (128, 8, 704, 32, True))]:
    q, k, v, bs = ns["case"](*args)
    ref = None
    for on in (False, True):
        for L in launches if on else launches[:1]:
            cfg = a.FlashConfig(fused_logits=True, unmasked_loads=True, bias_mma=on, fwd=a.Launch(*L))
            try:
                t = ns["timed"](lambda: a.flash_attention(q, k, v, bs, cfg))
            except Exception as e:
                print(f"{name:14s} mma={on} {L}: {type(e).__name__} {str(e)[:60]}")
                continue
            ref = ref or t
            print(f"{name:14s} mma={int(on)} {a.Launch(*L).name:12s} {t:8.3f} ms {t / ref:6.3f}", flush=True)
