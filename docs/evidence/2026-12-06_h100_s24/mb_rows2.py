"""Next session (~30 s): the triangle attention forward (folded mask, bf16, no gradients,
the evaluation's kernel config) with one row a program against two rows sharing the
bias tile (FlashConfig.shared_bias_rows), at 224, 480 and 704 residues; graph-replayed."""
import torch

import scalefold.kernels.attention as a

src = open(".devsnap/mb_bias_mma.py").read().split("base = a.FlashConfig")[0]
ns = {}
exec(src, ns)
one = a.FlashConfig(fused_logits=True, unmasked_loads=True, bias_mma=True)
two = a.FlashConfig(fused_logits=True, unmasked_loads=True, bias_mma=True, shared_bias_rows=True)
for n in (224, 480, 704):
    q, k, v, bs = ns["case"](n, 4, n, 32, False)
    with torch.no_grad():
        diff = (a.flash_attention(q, k, v, bs, one).float()
                - a.flash_attention(q, k, v, bs, two).float()).abs().max().item()
    t1 = ns["timed"](lambda: a.flash_attention(q, k, v, bs, one))
    t2 = ns["timed"](lambda: a.flash_attention(q, k, v, bs, two))
    print(f"triangle {n}: one row {t1:.3f} ms, two rows {t2:.3f} ms ({t2 / t1:.3f}x), "
          f"max diff {diff:.1e}", flush=True)
