"""Probe (device, ~1 min a process): the attention forward of the evaluation (no
gradients, the h200 evaluation's FlashConfig: fused logits, bias tile as MMA operand,
32-key blocks) at the mlperf model's call signatures, ms a call and weighted by calls.

Why: the rescale fix (51f279e: exp2(ml_i - ml_new) from rounded values, not an fma of
m_i * log2e) is the one kernel change between the twenty-sixth session's real pass
(71.02 s on an H100) and the thirtieth's (76.95 s on another H100, every length ~8%
slower). Run once with the code before the fix on PYTHONPATH and once with today's, on
the same card, to tell the kernel from the card.
Usage: python3 mb_rescale.py [N ...]   (default 160 288 448 704)
"""
import sys

import torch

from scalefold.bench._kernel_bench import time_call
from scalefold.bench.attention import record_signatures
from scalefold.kernels.attention import FlashConfig, flash_attention

DEV = torch.device("cuda" if torch.cuda.is_available() else "cpu")
EVAL = FlashConfig(dq_kernel=True, store_ds=True, fused_logits=True, precomputed_delta=True,
                   unmasked_loads=True, ds_dq_kernel=True, bias_mma=True,
                   fwd_half_key_block=True)


def main(lengths: list[int]) -> None:
    import scalefold.kernels.attention as attention_module
    print(f"{torch.cuda.get_device_name() if DEV.type == 'cuda' else 'cpu'}  "
          f"kernels from {attention_module.__file__}")
    total = 0.0
    for n in lengths:
        seen = record_signatures("mlperf", DEV, 0, n)
        weighted = 0.0
        for sig, calls in sorted(seen.items(), key=lambda x: -x[1] * x[0].min_bytes()):
            if sig.q.shape[-2] < 16:  # the template pointwise attention (Q = 1): no kernel
                continue
            gen = torch.Generator(device=DEV).manual_seed(0)
            q, k, v = (s.make(DEV, gen).detach() for s in (sig.q, sig.k, sig.v))
            biases = [b.make(DEV, gen).detach() for b in sig.biases]
            with torch.no_grad():
                s = time_call(lambda: flash_attention(q, k, v, biases, EVAL, scale=sig.scale),
                              2, 20, DEV)
            weighted += s * calls
            print(f"  N={n:4d} {sig.label():52s}{calls:>4d} calls {s * 1e3:9.4f} ms")
        total += weighted
        print(f"== N={n}: {weighted * 1e3:.3f} ms of attention forwards a model forward")
    print(f"== all: {total * 1e3:.3f} ms")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [160, 288, 448, 704])
