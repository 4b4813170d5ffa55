"""The channels-first triangle multiplication's gating: its backward as one Triton kernel
that also sums the stacked projection's bias gradient.

Forward (PyTorch ops, which `compile_glue` fuses): from the stacked projections
proj = [a_p, a_g, b_p, b_g] ([*, 4c, L], L = N·N, the bias already in them) and the pair
mask m, a = sigmoid(a_g)·m·a_p and b = sigmoid(b_g)·m·b_p, as the plain module computes.

Backward: given da, db ([*, c, L], contiguous with `contiguous_grads`), one pass writes
d proj = [da·s_a·m, da·m·a_p·s_a(1 − s_a), db·s_b·m, db·m·b_p·s_b(1 − s_b)] (s = sigmoid of
the gate, float32 math, one rounding to proj's dtype) and each program's partial sums of
those rounded values over its block of L; the bias gradient is their float32 sum, rounded
to the bias's dtype as autograd's sum over the broadcast dims rounds it. That pass reads
da, db and the four projections and writes the four gradients: ten tensors of [c, L].
In the H200 profile the kernel inductor fuses from the same graph (gating backward, cat,
and the bias's sum over L as a reduction over the contiguous dim, one row of L per
program) took 144 µs a call at the crop against ~35 µs for those bytes
(docs/perf-log/2026-12-04.md, section 17).

The bias gradient is routed through this function rather than through baddbmm: the
caller passes the bias to baddbmm detached and to this function as an input that the
forward does not read (proj already holds it), whose gradient is the sum of d proj over
L, exactly what baddbmm's backward would return for it.
"""

from __future__ import annotations

import torch

from scalefold.kernels._triton import tl, triton

if triton is not None:

    @triton.jit
    def _program_rows(M, L, BLOCK: tl.constexpr):
        # The program's channel j, batch row, block of L (offsets, in-bounds) and mask row
        # (grid: block of L, channel, batch row), float32
        j = tl.program_id(1)
        row = tl.program_id(2).to(tl.int64)
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        valid = offs < L
        m = tl.load(M + row * L + offs, mask=valid, other=0.0).to(tl.float32)
        return j, row, offs, valid, m

    @triton.jit
    def _projection_rows(P, base, C, L, offs, valid):
        # rows a_p, a_g, b_p, b_g of one channel (C rows of L apart from `base`), float32
        a_p = tl.load(P + base + offs, mask=valid, other=0.0).to(tl.float32)
        a_g = tl.load(P + base + C * L + offs, mask=valid, other=0.0).to(tl.float32)
        b_p = tl.load(P + base + 2 * C * L + offs, mask=valid, other=0.0).to(tl.float32)
        b_g = tl.load(P + base + 3 * C * L + offs, mask=valid, other=0.0).to(tl.float32)
        return a_p, a_g, b_p, b_g

    @triton.jit
    def _gating_bwd(P, M, DA, DB, DP, PART, L, C, NBLK, BLOCK: tl.constexpr):
        # Program (block of L, channel j, batch row): the four gradient rows j, c + j,
        # 2c + j, 3c + j of the block, and their sums over it.
        j, row, offs, valid, m = _program_rows(M, L, BLOCK)
        da = tl.load(DA + (row * C + j) * L + offs, mask=valid, other=0.0).to(tl.float32)
        db = tl.load(DB + (row * C + j) * L + offs, mask=valid, other=0.0).to(tl.float32)
        base = (row * 4 * C + j) * L  # a_p's row j; a_g, b_p, b_g follow C rows apart
        a_p, a_g, b_p, b_g = _projection_rows(P, base, C, L, offs, valid)
        s_a = tl.sigmoid(a_g)
        s_b = tl.sigmoid(b_g)
        dt = DP.dtype.element_ty
        d_ap = (da * s_a * m).to(dt)
        d_ag = (da * m * a_p * s_a * (1.0 - s_a)).to(dt)
        d_bp = (db * s_b * m).to(dt)
        d_bg = (db * m * b_p * s_b * (1.0 - s_b)).to(dt)
        tl.store(DP + base + offs, d_ap, mask=valid)
        tl.store(DP + base + C * L + offs, d_ag, mask=valid)
        tl.store(DP + base + 2 * C * L + offs, d_bp, mask=valid)
        tl.store(DP + base + 3 * C * L + offs, d_bg, mask=valid)
        # partial sums [rows, NBLK, 4, C]: the bias gradient sums the rounded values
        part = PART + ((row * NBLK + tl.program_id(0)) * 4) * C + j
        tl.store(part, tl.sum(d_ap.to(tl.float32), axis=0))
        tl.store(part + C, tl.sum(d_ag.to(tl.float32), axis=0))
        tl.store(part + 2 * C, tl.sum(d_bp.to(tl.float32), axis=0))
        tl.store(part + 3 * C, tl.sum(d_bg.to(tl.float32), axis=0))


_BLOCK = 1024


def _gate(proj: torch.Tensor, m: torch.Tensor, c: int) -> tuple[torch.Tensor, torch.Tensor]:
    # proj: [*, 4c, L]  m: [*, 1, L] -> a, b: [*, c, L]
    a_p, a_g, b_p, b_g = proj.split(c, dim=-2)
    return torch.sigmoid(a_g) * m * a_p, torch.sigmoid(b_g) * m * b_p


class _GatedProjections(torch.autograd.Function):
    @staticmethod
    def forward(ctx, proj: torch.Tensor, bias: torch.Tensor, m: torch.Tensor, c: int):
        # proj: [*, 4c, L] with the bias in it; bias [4c]: only for its gradient
        ctx.save_for_backward(proj, m)
        ctx.c = c
        ctx.bias_dtype = bias.dtype
        return _gate(proj, m, c)

    @staticmethod
    def backward(ctx, da: torch.Tensor, db: torch.Tensor):
        proj, m = ctx.saved_tensors
        c = ctx.c
        length = proj.shape[-1]
        p = proj.reshape(-1, 4 * c, length)  # [R, 4c, L]
        rows = p.shape[0]
        mask = m.expand(*proj.shape[:-2], 1, length).reshape(rows, length)  # [R, L]
        da = da.reshape(rows, c, length).contiguous()
        db = db.reshape(rows, c, length).contiguous()
        dp = torch.empty_like(p)
        nblk = triton.cdiv(length, _BLOCK)
        part = torch.empty((rows, nblk, 4, c), dtype=torch.float32, device=p.device)
        _gating_bwd[(nblk, c, rows)](p, mask.contiguous(), da, db, dp, part, length, c, nblk,
                                     BLOCK=_BLOCK, num_warps=4)
        dbias = part.sum(dim=(0, 1)).flatten().to(ctx.bias_dtype)  # [4c]: a_p, a_g, b_p, b_g
        return dp.reshape(proj.shape), dbias, None, None


def gated_projections(proj: torch.Tensor, bias: torch.Tensor, m: torch.Tensor,
                      c: int) -> tuple[torch.Tensor, torch.Tensor]:
    """a = sigmoid(a_g)·m·a_p and b = sigmoid(b_g)·m·b_p ([*, c, L]) from the stacked
    projections `proj` ([*, 4c, L], the bias already added) and the mask `m` ([*, 1, L],
    broadcastable), with the backward kernel above. `bias` ([4c]) is not read: it
    receives the stacked bias's gradient (pass it to the projection detached). proj must
    be contiguous and Triton usable on it (the caller checks)."""
    return _GatedProjections.apply(proj, bias, m, c)
