"""LayerNorm over the channels of a channels-first tensor, written channels-last.

Channels-first triangle multiplication (`scalefold.kernels.trimul`) produces its triangle
product x as [*, c, N·N] (the batched matmul's own layout), and its output LayerNorm
normalises over c. The row LayerNorm kernel needs rows of c contiguous, so x seen as
[*, N·N, c] is copied before it and its gradient comes back transposed and is copied
again: 4 copies of [128, 256, 256] per Evoformer block in the H200 profile.

These kernels read x where it is: a program loads a [C, BLOCK_M] tile (coalesced along
the positions), reduces over the channels in registers and stores the output tile
transposed, [BLOCK_M, C], so `linear_z` gets the contiguous [*, N·N, c] it expects. The
backward reads the [*, N·N, c] gradient and writes dx channels-first, the layout the
matmul's backward takes without a copy. dweight and dbias are reduced per program into a
[programs, C] buffer that PyTorch sums, as in the row kernel. Statistics in float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from scalefold.kernels._triton import next_pow2, tl, triton, triton_usable
from scalefold.kernels.layer_norm import LayerNormOutput, _autocast_output_dtype

if triton is not None:

    @triton.jit
    def _ln_cf_fwd(X, W, B, Y, MEAN, RSTD, C, M, eps,
                   BLOCK_C: tl.constexpr, BLOCK_M: tl.constexpr):
        r = tl.program_id(1)
        cs = tl.arange(0, BLOCK_C)  # [BC]
        ms = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)  # [BM]
        cmask = cs < C
        mmask = ms < M
        mask = cmask[:, None] & mmask[None, :]
        base = r.to(tl.int64) * C * M
        x = tl.load(X + base + cs[:, None] * M + ms[None, :], mask=mask,
                    other=0.0).to(tl.float32)  # [BC, BM]
        mean = tl.sum(x, axis=0) / C  # [BM]
        xc = tl.where(mask, x - mean[None, :], 0.0)
        var = tl.sum(xc * xc, axis=0) / C
        rstd = 1.0 / tl.sqrt(var + eps)
        w = tl.load(W + cs, mask=cmask, other=0.0).to(tl.float32)
        b = tl.load(B + cs, mask=cmask, other=0.0).to(tl.float32)
        y = xc * rstd[None, :] * w[:, None] + b[:, None]
        # transposed store: y[m, c] at m * C + c
        tl.store(Y + base + ms[None, :] * C + cs[:, None], y.to(Y.dtype.element_ty), mask=mask)
        tl.store(MEAN + r * M + ms, mean, mask=mmask)
        tl.store(RSTD + r * M + ms, rstd, mask=mmask)

    @triton.jit
    def _ln_cf_bwd(X, W, DY, DX, MEAN, RSTD, DW_PART, DB_PART, C, M, n_blocks, m_blocks,
                   blocks_per_prog, BLOCK_C: tl.constexpr, BLOCK_M: tl.constexpr):
        pid = tl.program_id(0)
        cs = tl.arange(0, BLOCK_C)
        cmask = cs < C
        w = tl.load(W + cs, mask=cmask, other=0.0).to(tl.float32)
        dw = tl.zeros([BLOCK_C], dtype=tl.float32)
        db = tl.zeros([BLOCK_C], dtype=tl.float32)
        for i in range(0, blocks_per_prog):
            k = pid * blocks_per_prog + i
            r = k // m_blocks
            ms = (k % m_blocks) * BLOCK_M + tl.arange(0, BLOCK_M)
            m_end = tl.where(k < n_blocks, M, 0)  # programs past the last block: no-ops
            mmask = ms < m_end
            mask = cmask[:, None] & mmask[None, :]
            base = r.to(tl.int64) * C * M
            x = tl.load(X + base + cs[:, None] * M + ms[None, :], mask=mask,
                        other=0.0).to(tl.float32)  # [BC, BM]
            dy = tl.load(DY + base + ms[None, :] * C + cs[:, None], mask=mask,
                         other=0.0).to(tl.float32)  # [BC, BM], read from [M, C]
            mean = tl.load(MEAN + r * M + ms, mask=mmask, other=0.0)
            rstd = tl.load(RSTD + r * M + ms, mask=mmask, other=0.0)
            xhat = tl.where(mask, (x - mean[None, :]) * rstd[None, :], 0.0)
            g = dy * w[:, None]
            c1 = tl.sum(g * xhat, axis=0) / C
            c2 = tl.sum(g, axis=0) / C
            dx = (g - c2[None, :] - xhat * c1[None, :]) * rstd[None, :]
            tl.store(DX + base + cs[:, None] * M + ms[None, :], dx.to(DX.dtype.element_ty),
                     mask=mask)
            dw += tl.sum(dy * xhat, axis=1)
            db += tl.sum(dy, axis=1)
        tl.store(DW_PART + pid * C + cs, dw, mask=cmask)
        tl.store(DB_PART + pid * C + cs, db, mask=cmask)


# Backward programs to aim for: enough to fill the GPU, few partial dweight/dbias rows.
BWD_PROGRAMS = 1024


def _block_m(c: int) -> int:
    # About 4K elements a program, at least 16 positions for coalesced loads.
    return max(16, min(128, 4096 // next_pow2(c)))


class _LayerNormCFFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, eps: float, out_dtype: torch.dtype):
        # x: [R, C, M] contiguous -> y: [R, M, C]
        r, c, m = x.shape
        y = torch.empty((r, m, c), dtype=out_dtype, device=x.device)
        mean = torch.empty((r, m), dtype=torch.float32, device=x.device)
        rstd = torch.empty((r, m), dtype=torch.float32, device=x.device)
        bm = _block_m(c)
        if x.numel() > 0:
            _ln_cf_fwd[(triton.cdiv(m, bm), r)](x, weight, bias, y, mean, rstd, c, m, eps,
                                                BLOCK_C=next_pow2(c), BLOCK_M=bm, num_warps=4)
        ctx.save_for_backward(x, weight, mean, rstd)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight, mean, rstd = ctx.saved_tensors
        r, c, m = x.shape
        dy = dy.contiguous()  # [R, M, C]
        dx = torch.empty_like(x)
        bm = _block_m(c)
        m_blocks = triton.cdiv(m, bm)
        n_blocks = r * m_blocks
        blocks_per_prog = max(1, triton.cdiv(n_blocks, BWD_PROGRAMS))
        progs = max(1, triton.cdiv(n_blocks, blocks_per_prog))
        dw_part = torch.empty((progs, c), dtype=torch.float32, device=x.device)
        db_part = torch.empty((progs, c), dtype=torch.float32, device=x.device)
        if x.numel() > 0:
            _ln_cf_bwd[(progs,)](x, weight, dy, dx, mean, rstd, dw_part, db_part, c, m,
                                 n_blocks, m_blocks, blocks_per_prog, BLOCK_C=next_pow2(c),
                                 BLOCK_M=bm, num_warps=4)
        return dx, dw_part.sum(0).to(weight.dtype), db_part.sum(0).to(weight.dtype), None, None


def layer_norm_channels_first(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                              eps: float = 1e-5, output: LayerNormOutput = "fp32"
                              ) -> torch.Tensor:
    """LayerNorm over dim -2 of x ([*, C, M]), returned channels-last ([*, M, C]).

    The same values as `F.layer_norm(x.transpose(-1, -2), (C,), weight, bias, eps)`, with
    the output dtype rules of `scalefold.kernels.layer_norm.layer_norm`.
    """
    out_dtype = _autocast_output_dtype(x, output)
    if not triton_usable(x):
        y = F.layer_norm(x.transpose(-1, -2), (x.shape[-2],), weight, bias, eps)
        return y if out_dtype is None else y.to(out_dtype)
    lead, (c, m) = x.shape[:-2], x.shape[-2:]
    x3 = x.reshape(-1, c, m).contiguous()
    y = _LayerNormCFFn.apply(x3, weight, bias, eps, out_dtype or x.dtype)
    return y.reshape(*lead, m, c)
