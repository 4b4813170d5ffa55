"""Micro-benchmark (next device session, ~1 min): the triangle multiplication's
projection-gating kernel (`_projection_gating_fwd`, 8.7% of a 704-residue chain's kernel
time, ~1.3 TB/s) with its input LayerNorm, today's launch (four programs a z tile, each
normalising it again) against the loop form (`groups_in_loop`: one program a block of
positions, z read and normalised once) at a few launches; bf16 weights, the fp32 pair
stream, CUDA graphs. Run from the repository root after source scripts/gpu_env.sh."""
import torch

from scalefold.kernels.trimul_projection import (DEFAULT_LAUNCH, ProjectionGatingLaunch,
                                                 project_gate_forward)

dev = "cuda"
exec(open(".devsnap/mb_ln2.py").read().split("def case")[0].split("dev = \"cuda\"")[1])
launches = [DEFAULT_LAUNCH] + [ProjectionGatingLaunch(bl, w, st, True) for bl, w, st in
                               [(64, 4, 1), (64, 4, 2), (64, 8, 1), (64, 8, 2), (128, 8, 1),
                                (128, 8, 2), (128, 4, 1)]]
with torch.no_grad():
    for n_res in (224, 704):
        c = 128
        z = torch.randn(1, n_res, n_res, c, device=dev)  # the raw fp32 stream
        w = torch.randn(4 * c, c, device=dev, dtype=torch.bfloat16) / 11
        b = torch.randn(4 * c, device=dev, dtype=torch.bfloat16)
        m = (torch.rand(1, 1, n_res * n_res, device=dev) > 0.1).float()
        nm = Norm(c)
        nbytes = n_res * n_res * (c * 4 + 4 + 2 * c * 2)  # z, mask in; a, b out
        ref = project_gate_forward(z, w, b, m, c, norm=nm)
        base = None
        for lc in launches:
            try:
                t = timed(lambda: project_gate_forward(z, w, b, m, c, norm=nm, launch=lc))
                out = project_gate_forward(z, w, b, m, c, norm=nm, launch=lc)
            except Exception as e:
                print(f"{n_res} {lc}: {type(e).__name__} {str(e)[:80]}")
                continue
            base = base or t
            diff = max((x.float() - y.float()).abs().max().item() for x, y in zip(out, ref))
            print(f"{n_res} {str(lc):90s} {t:8.1f} us {t / base:5.2f}x "
                  f"{nbytes / t / 1e6:5.2f} TB/s  max diff {diff:.1e}", flush=True)
