"""Probe (device, ~2 min): the attention forward without gradients, ours against
PyTorch's scaled_dot_product_attention backends, at the evaluation's call signatures.

Why: the attention forward is the largest kernel family of a long evaluation chain
(37% at 700 residues, call 15) and runs at ~1.05e12 score elements a second, ~25% of
the H200's exponential rate. If cuDNN's or the memory-efficient kernel runs the same
signatures much faster, a `AttentionCore` of that backend is worth building.

For each signature recorded from the plain model (mlperf shapes at N residues):
  ours      flash_attention(...) with the h200 preset's FlashConfig, no gradients
  <be>/full the biases summed into one [B, H, Q, K] mask (materialised, outside timing)
  <be>/head the per-head bias only, [1, H, Q, K] broadcast over the batch (what a core
            could pass with the key mask folded into it: `triangle_attention_folded_mask`)
  <be>/head_x the same expanded to [B, H, Q, K] (stride 0 over the batch)
q, k, v made contiguous [B, H, L, E]; where a backend refuses, the warnings it gave say why.
with be in cudnn, efficient. Times: CUDA graph replays (time_call), ms a call; "-" where
the backend refused the call. err: max |sdpa/full - ours| (bf16 outputs).
Usage: python3 mb_sdpa.py [N ...]   (default 224 448 704)
"""
import sys
import warnings

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from scalefold.bench._kernel_bench import time_call
from scalefold.bench.attention import record_signatures
from scalefold.kernels.attention import FlashConfig, flash_attention

DEV = torch.device("cuda" if torch.cuda.is_available() else "cpu")
OURS = FlashConfig(fused_logits=True, precomputed_delta=True, unmasked_loads=True,
                   ds_dq_kernel=True)
BACKENDS = {"cudnn": SDPBackend.CUDNN_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION}
FORMS = ("full", "head", "head_x")  # summed biases; the per-head bias [1, H, Q, K]; expanded


def flat4(t: torch.Tensor, lead: tuple[int, ...]) -> torch.Tensor:
    # [*, H, L, E] -> [B, H, L, E] (a copy where the leading dims do not fold)
    return t.expand(*lead, *t.shape[-3:]).reshape(-1, *t.shape[-3:])


def main(lengths):
    print(f"torch {torch.__version__}  {torch.cuda.get_device_name() if DEV.type == 'cuda' else 'cpu'}  "
          f"cudnn {torch.backends.cudnn.version()}")
    for n in lengths:
        seen = record_signatures("mlperf", DEV, 0, n)
        print(f"\n== N={n}: {len(seen)} signatures, {sum(seen.values())} calls a forward")
        head = (f"{'signature':52s}{'calls':>6s}{'ours':>9s}" + "".join(
            f"{b + '/' + f:>16s}" for b in BACKENDS for f in FORMS) + f"{'err':>9s}")
        print(head)
        tot = {}
        for sig, calls in sorted(seen.items(), key=lambda x: -x[1] * x[0].min_bytes()):
            if sig.q.shape[-2] < 16:  # the template pointwise attention (Q = 1): no kernel
                continue
            gen = torch.Generator(device=DEV).manual_seed(0)
            q, k, v = (s.make(DEV, gen).detach() for s in (sig.q, sig.k, sig.v))
            biases = [b.make(DEV, gen).detach() for b in sig.biases]
            lead = tuple(q.shape[:-3])
            with torch.no_grad():
                ref = flash_attention(q, k, v, biases, OURS, scale=sig.scale)
                t = {"ours": time_call(
                    lambda: flash_attention(q, k, v, biases, OURS, scale=sig.scale), 2, 10, DEV)}
                q4, k4, v4 = (flat4(x, lead).contiguous() for x in (q, k, v))
                full = sum(b.float() for b in biases) if biases else None
                full = (flat4(full.expand(*q.shape[:-1], k.shape[-2]), lead).to(q.dtype)
                        if full is not None else None)
                # the one bias that carries H (the pair bias), else the mask
                per_head = [b for b in biases if b.shape[-3] != 1] or biases
                hb = per_head[0].reshape(-1, *per_head[0].shape[-3:])[:1] if per_head else None
                err = float("nan")
                masks = {"full": full, "head": hb,
                         "head_x": None if hb is None else hb.expand(q4.shape[0], *hb.shape[1:])}
                for name, be in BACKENDS.items():
                    for form, mask in masks.items():
                        def call(mask=mask, be=be):
                            with sdpa_kernel([be]):
                                return F.scaled_dot_product_attention(q4, k4, v4, attn_mask=mask,
                                                                      scale=sig.scale)
                        try:
                            with warnings.catch_warnings(record=True) as caught:
                                warnings.simplefilter("always")
                                try:
                                    o = call()
                                finally:
                                    why = "; ".join(str(w.message)[:160] for w in caught)
                            t[f"{name}/{form}"] = time_call(call, 2, 10, DEV)
                            if form == "full":
                                e = (o.reshape(ref.shape).float() - ref.float()).abs().max().item()
                                err = e if err != err else max(err, e)
                        except Exception as ex:  # a backend refusing the shapes or mask
                            t[f"{name}/{form}"] = None
                            print(f"    {name}/{form}: {type(ex).__name__}: {str(ex)[:100]}"
                                  f" | why: {why}")
            for key, s in t.items():
                if s is not None:
                    tot[key] = tot.get(key, 0.0) + s * calls
            cells = "".join(f"{t[key] * 1e3:>16.3f}" if t.get(key) is not None else f"{'-':>16s}"
                            for key in (f"{b}/{f}" for b in BACKENDS for f in FORMS))
            print(f"{sig.label():52s}{calls:>6d}{t['ours'] * 1e3:>9.3f}{cells}{err:>9.4f}")
        print("weighted by calls (ms a forward): " + ", ".join(
            f"{k} {v * 1e3:.2f}" for k, v in tot.items()))


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [224, 448, 704])
