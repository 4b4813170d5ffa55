"""Thirty-eighth session: the attention forward's 16-bit bias tile loaded stages ahead by
the loop's pipeline (FlashConfig.pipelined_bias_loads) or through a TMA tensor descriptor
(bias_tma), against the identity product (bias_mma, today's
evaluation) and the plain load, at the evaluation's calls (bf16, no gradients, fused
logits, unmasked loads): triangle attention with the folded mask (one contiguous tile,
4 heads, c 32) and MSA row attention (mask row + contiguous pair tile, 8 heads, c 32,
128 rows), with the 32-key blocks where the evaluation takes them; and the pipelined load
of the tile in fp32 (no conversion in the loop: 316 instructions an iteration against
bias_mma's 297 and the bf16 tile's 344, Triton 3.6, sass_fwd_forms_triton36.txt), and the
pipelined tile with 128-query tiles and 8 warps (330 instructions, 6 HGMMA; no evaluation
variant: the launch is not a SpeedConfig field). Each call replayed
as a CUDA graph (`bench attention`'s `time_call`: 20 replays, median of 3 runs), ms; the
largest difference of each form's output from the load's."""
import dataclasses

import torch

import scalefold.kernels.attention as a
from scalefold.bench._kernel_bench import time_call

dev = "cuda"
torch.manual_seed(0)


def case(rows, h, n, c, row_mask):
    q = torch.randn(1, rows, n, h, c, device=dev, dtype=torch.bfloat16).transpose(-2, -3)
    k, v = torch.randn_like(q), torch.randn_like(q)
    tile = torch.randn(1, 1, h, n, n, device=dev, dtype=torch.bfloat16)
    bs = [tile]
    if row_mask:
        mask = torch.zeros(1, rows, 1, 1, n, device=dev)
        mask[..., -3:] = -1e9
        bs = [mask, tile]
    return q, k, v, bs


base = a.FlashConfig(fused_logits=True, unmasked_loads=True, fwd_half_key_block=True)
# name: (FlashConfig fields, the tile in fp32: no conversion in the loop, twice the bytes)
forms = {"load": ({}, False), "mma": ({"bias_mma": True}, False),
         "pipe": ({"pipelined_bias_loads": True}, False),
         "tma": ({"bias_tma": True}, False),
         "pipe_f32": ({"pipelined_bias_loads": True}, True),
         # 128-query tiles, 8 warps: the identity product would be 4x q kᵀ's work there
         "pipe_q128": ({"pipelined_bias_loads": True, "fwd": a.Launch(128, 64, 8, 3)}, False)}
cases = [(f"triangle {n}", (n, 4, n, 32, False)) for n in (704, 96, 224, 288, 352, 448, 576)]
cases += [(f"MSA row {n}", (128, 8, n, 32, True)) for n in (224, 704)]
print(f"{'call':14s} " + " ".join(f"{f:>9s}" for f in forms)
      + "  best/mma  (form)  diffs vs load")
for name, args in cases:
    q, k, v, bs = case(*args)
    outs, times = [], []
    for kw, f32 in forms.values():
        cfg = dataclasses.replace(base, **kw)
        biases = [b.float() for b in bs] if f32 else bs

        def call(q=q, k=k, v=v, bs=biases, cfg=cfg):
            return a.flash_attention(q, k, v, bs, cfg)

        with torch.no_grad():
            outs.append(call().float())
            times.append(time_call(call, 1, 20, torch.device(dev)) * 1e3)
    diffs = " ".join(f"{(o - outs[0]).abs().max().item():.1e}" for o in outs[1:])
    names = list(forms)
    # the best of the forms the evaluation can take (callBT.sh screens its variant)
    best = min((names.index(f) for f in ("pipe", "tma", "pipe_f32")), key=lambda i: times[i])
    print(f"{name:14s} " + " ".join(f"{t:9.4f}" for t in times)
          + f"  {times[best] / times[1]:7.3f}  ({names[best]})  {diffs}", flush=True)
