"""Micro-benchmark (next device session, ~4 min): the LayerNorm-projection kernel
(`_ln_linear_fwd`, 24% of a chain's kernel time at 224 and 704 residues, 2.4x its
bandwidth bound by the twenty-third session's estimate) at the evaluation's calls, with a
launch sweep (rows a program, columns a step, warps, stages) against today's default, and
the bytes each call moves over its time (TB/s). bf16 compute, fp32 residual streams, CUDA
graphs. Run from the repository root: python3 .devsnap/mb_ln3.py [224 704]."""
import itertools
import sys

import torch

from scalefold.kernels.ln_linear import (DEFAULT_LAUNCH, LnLinearLaunch, layer_norm_linear,
                                         linear_epilogue)

dev = "cuda"
torch.manual_seed(0)
exec(open(".devsnap/mb_ln2.py").read().split("def case")[0].split("dev = \"cuda\"")[1])


def bf(*s):
    return torch.randn(*s, device=dev, dtype=torch.bfloat16)


def calls(n_res):
    """(name, bytes moved, fn(launch)) for one length."""
    L = n_res * n_res
    S = 128 * n_res  # MSA rows x residues
    out = []
    z, nm = bf(L, 128), Norm(128)
    w512, b512 = bf(512, 128) / 11, bf(512)
    out.append(("tri q/k/v/g K128 N512", L * (128 + 512) * 2,
                lambda lc: layer_norm_linear(z, nm, w512, b512, launch=lc)))
    w4 = bf(4, 128) / 11
    out.append(("tri bias K128 N4", L * (128 + 4) * 2,
                lambda lc: layer_norm_linear(z, nm, w4, None, launch=lc)))
    o, wo, bo, r = bf(L, 128), bf(128, 128) / 11, bf(128), torch.randn(L, 128, device=dev)
    out.append(("tri out K128 N128 +res32", L * (128 * 2 + 128 * 4 * 2),
                lambda lc: linear_epilogue(o, wo, bo, residual=r, launch=lc)))
    xc, g = bf(128, L), bf(L, 128)
    out.append(("trimul out cf K128 N128 gate+res32", L * (128 * 2 * 2 + 128 * 4 * 2),
                lambda lc: layer_norm_linear(xc, nm, wo, bo, channels_first=True, gate=g,
                                             residual=r, launch=lc)))
    om, wm, bm, rm = bf(S, 256), bf(256, 256) / 16, bf(256), torch.randn(S, 256, device=dev)
    out.append(("msa out K256 N256 +res32", S * (256 * 2 + 256 * 4 * 2),
                lambda lc: linear_epilogue(om, wm, bm, residual=rm, launch=lc)))
    return out


lengths = [int(a) for a in sys.argv[1:]] or [224, 704]
sweep = [LnLinearLaunch(*p) for p in itertools.product((64, 128), (64, 128), (4, 8), (1, 2, 3))]
with torch.no_grad():
    for n_res in lengths:
        for name, nbytes, fn in calls(n_res):
            base = timed(lambda: fn(DEFAULT_LAUNCH))
            rows = []
            for lc in sweep:
                try:
                    rows.append((timed(lambda: fn(lc)), lc))
                except Exception as e:  # shared memory, registers
                    print(f"    {lc}: {type(e).__name__}")
            rows.sort(key=lambda r: r[0])
            print(f"{n_res} {name:34s} default {base:8.1f} us {nbytes / base / 1e6:5.2f} TB/s; "
                  f"best {rows[0][0]:8.1f} us ({rows[0][0] / base:.2f}x, "
                  f"{nbytes / rows[0][0] / 1e6:.2f} TB/s) {rows[0][1]}", flush=True)
            for t, lc in rows[1:3]:
                print(f"      {t:8.1f} us ({t / base:.2f}x) {lc}", flush=True)
