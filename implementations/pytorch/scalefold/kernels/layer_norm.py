"""LayerNorm over the last dimension as Triton kernels (forward; backward and its sum).

The model's widths are 16..384 channels (c_t, c_e, c_z, c_m, c_s), so one program holds a
block of whole rows in registers: the forward reads x once and writes y once; the
backward reads x and dy once, writes dx, and reduces dweight/dbias per program into a
small [2, programs, C] buffer that `_ln_bwd_wb` sums in a fixed order (no atomics,
deterministic).

Output dtype under autocast (`output`): "fp32" returns float32, as `F.layer_norm` does
there, so the residual streams keep the eager bf16 path's precision; "compute" returns
the autocast dtype (bf16). The LayerNorm output then feeds the next matmul without a cast
and the residual streams it is added to stay bf16, which halves the bytes of every
elementwise op and of most saved activations (AlphaFold itself trained in bf16). The
statistics are always computed in float32. Outside autocast the output has the input's
dtype.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from scalefold.kernels._autocast import autocast_dtype
from scalefold.kernels._triton import next_pow2, tl, triton, triton_usable
from scalefold.model.primitives import LayerNorm

if triton is not None:

    @triton.jit
    def _ln_rows(x, mask, cols, cmask, W, B, C, eps):
        # x: [BM, BC] float32 rows (0 where masked) -> (x normalised, times w plus b, in
        # float32; mean [BM]; rstd [BM]): two-pass statistics. The one LayerNorm
        # arithmetic of every kernel that normalises (`_ln_fwd`, `ln_linear`'s).
        mean = tl.sum(x, axis=1) / C
        xc = tl.where(mask, x - mean[:, None], 0.0)
        var = tl.sum(xc * xc, axis=1) / C
        rstd = 1.0 / tl.sqrt(var + eps)
        w = tl.load(W + cols, mask=cmask, other=0.0).to(tl.float32)
        b = tl.load(B + cols, mask=cmask, other=0.0).to(tl.float32)
        return xc * rstd[:, None] * w[None, :] + b[None, :], mean, rstd

    @triton.jit
    def _ln_fwd(X, W, B, Y, MEAN, RSTD, M, C, eps,
                BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
        rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)  # [BM]
        cols = tl.arange(0, BLOCK_C)  # [BC]
        rmask = rows < M
        cmask = cols < C
        mask = rmask[:, None] & cmask[None, :]
        offs = rows[:, None].to(tl.int64) * C + cols[None, :]
        x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)  # [BM, BC]
        y, mean, rstd = _ln_rows(x, mask, cols, cmask, W, B, C, eps)
        tl.store(Y + offs, y.to(Y.dtype.element_ty), mask=mask)
        tl.store(MEAN + rows, mean, mask=rmask)
        tl.store(RSTD + rows, rstd, mask=rmask)

    @triton.jit
    def _ln_bwd_rows(X, DY, MEAN, RSTD, rows, cols, M, C):
        # The inputs of one block of rows: x and dy [BM, BC] (fp32), mean and rstd [BM].
        rmask = rows < M
        mask = rmask[:, None] & (cols < C)[None, :]
        offs = rows[:, None].to(tl.int64) * C + cols[None, :]
        x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(DY + offs, mask=mask, other=0.0).to(tl.float32)
        mean = tl.load(MEAN + rows, mask=rmask, other=0.0)
        rstd = tl.load(RSTD + rows, mask=rmask, other=0.0)
        return x, dy, mean, rstd

    @triton.jit
    def _ln_bwd(X, W, DY, DX, MEAN, RSTD, DW_PART, DB_PART, M, C, blocks_per_prog,
                BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr,
                STREAM: tl.constexpr = False):
        # Each program runs blocks_per_prog consecutive blocks of BLOCK_M rows. STREAM: the
        # next block's loads are issued before this block's arithmetic and store (Triton
        # pipelines no plain loads of such a loop: its sm90 code has no cp.async), and the
        # dweight/dbias terms accumulate as [BM, BC] tiles reduced over rows once after the
        # loop instead of in every iteration (a cross-warp reduction with barriers each).
        pid = tl.program_id(0)
        cols = tl.arange(0, BLOCK_C)
        cmask = cols < C
        w = tl.load(W + cols, mask=cmask, other=0.0).to(tl.float32)
        if STREAM:
            dw = tl.zeros([BLOCK_M, BLOCK_C], dtype=tl.float32)
            db = tl.zeros([BLOCK_M, BLOCK_C], dtype=tl.float32)
            nxt = _ln_bwd_rows(X, DY, MEAN, RSTD,
                               pid * blocks_per_prog * BLOCK_M + tl.arange(0, BLOCK_M),
                               cols, M, C)
        else:
            dw = tl.zeros([BLOCK_C], dtype=tl.float32)
            db = tl.zeros([BLOCK_C], dtype=tl.float32)
        for i in range(0, blocks_per_prog):
            rows = (pid * blocks_per_prog + i) * BLOCK_M + tl.arange(0, BLOCK_M)
            mask = (rows < M)[:, None] & cmask[None, :]
            offs = rows[:, None].to(tl.int64) * C + cols[None, :]
            if STREAM:
                x, dy, mean, rstd = nxt
                # rows past this program's blocks are masked off (no memory traffic)
                ahead = tl.where(i + 1 < blocks_per_prog, rows + BLOCK_M, M)
                nxt = _ln_bwd_rows(X, DY, MEAN, RSTD, ahead, cols, M, C)
            else:
                x, dy, mean, rstd = _ln_bwd_rows(X, DY, MEAN, RSTD, rows, cols, M, C)
            xhat = tl.where(mask, (x - mean[:, None]) * rstd[:, None], 0.0)
            g = dy * w[None, :]
            # dx = rstd (g - mean(g) - xhat mean(g xhat)), the LayerNorm Jacobian product
            c1 = tl.sum(g * xhat, axis=1) / C
            c2 = tl.sum(g, axis=1) / C
            dx = (g - c2[:, None] - xhat * c1[:, None]) * rstd[:, None]
            tl.store(DX + offs, dx.to(DX.dtype.element_ty), mask=mask)
            if STREAM:
                dw += dy * xhat
                db += dy
            else:
                dw += tl.sum(dy * xhat, axis=0)
                db += tl.sum(dy, axis=0)
        if STREAM:
            tl.store(DW_PART + pid * C + cols, tl.sum(dw, axis=0), mask=cmask)
            tl.store(DB_PART + pid * C + cols, tl.sum(db, axis=0), mask=cmask)
        else:
            tl.store(DW_PART + pid * C + cols, dw, mask=cmask)
            tl.store(DB_PART + pid * C + cols, db, mask=cmask)

    @triton.jit
    def _ln_bwd_wb(PART, OUT, P, C, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
        # PART: [2, P, C] fp32, the backward programs' dweight then dbias partials;
        # OUT: [2, C]. Each program sums a block of columns of one of the two over P in a
        # fixed order (deterministic), one launch for both instead of two PyTorch sums.
        which = tl.program_id(1)
        cols = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)  # [BC]
        cmask = cols < C
        base = PART + which * P * C
        acc = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
        for p0 in range(0, P, BLOCK_P):
            rows = p0 + tl.arange(0, BLOCK_P)  # [BP]
            mask = (rows < P)[:, None] & cmask[None, :]
            acc += tl.load(base + rows[:, None] * C + cols[None, :], mask=mask, other=0.0)
        tl.store(OUT + which * C + cols, tl.sum(acc, axis=0).to(OUT.dtype.element_ty),
                 mask=cmask)


@dataclass(frozen=True)
class LayerNormLaunch:
    """How the kernels are launched; `scalefold bench layernorm` sweeps these."""

    block_elems: int = 4096  # elements a forward program holds (rows = this / C)
    fwd_warps: int = 4
    bwd_warps: int = 4
    # Backward programs to aim for: enough to fill the GPU, few partial dweight/dbias
    # rows to sum afterwards.
    bwd_programs: int = 1024
    bwd_block_elems: int = 8192  # elements a backward program holds per step
    # The backward's loads one block ahead and its dweight/dbias sums as tiles (`_ln_bwd`'s
    # STREAM), for launches with several blocks a program.
    bwd_stream: bool = False

    def block_m(self, c: int, backward: bool = False) -> int:
        elems = self.bwd_block_elems if backward else self.block_elems
        return max(1, min(64, elems // next_pow2(c)))

    @property
    def name(self) -> str:
        return (f"e{self.block_elems}/{self.bwd_block_elems}-w{self.fwd_warps}/"
                f"{self.bwd_warps}-p{self.bwd_programs}" + ("-stream" if self.bwd_stream else ""))


# `scalefold bench layernorm` on the H200 (docs/perf-log/2026-11-29_s6.md): with the
# partials summed by `_ln_bwd_wb`, the backward with 8192-element blocks and up to 1024
# programs takes 24.7 ms per forward's calls, against 33.7 ms with 4096-element blocks
# and the partials summed by two PyTorch reductions; the forward's best launch differed
# from 4096 elements by 0.1 ms.
DEFAULT_LAUNCH = LayerNormLaunch()
# `SpeedConfig.layer_norm_bwd_stream`: four programs a multiprocessor (132 on an H100 or
# H200), each streaming blocks of 2,048 elements (16 rows of the pair's 128 channels).
# Not measured yet; `scalefold bench layernorm` times it beside the other stream launches.
STREAM_LAUNCH = LayerNormLaunch(bwd_block_elems=2048, bwd_programs=528, bwd_stream=True)


class _LayerNormFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, eps: float, out_dtype: torch.dtype,
                launch: LayerNormLaunch = DEFAULT_LAUNCH):
        c = x.shape[-1]
        x2 = x.reshape(-1, c).contiguous()  # [M, C]
        m = x2.shape[0]
        y = torch.empty((m, c), dtype=out_dtype, device=x.device)
        mean = torch.empty(m, dtype=torch.float32, device=x.device)
        rstd = torch.empty(m, dtype=torch.float32, device=x.device)
        bm, bc = launch.block_m(c), next_pow2(c)
        if m > 0:
            _ln_fwd[(triton.cdiv(m, bm),)](x2, weight, bias, y, mean, rstd, m, c, eps,
                                           BLOCK_M=bm, BLOCK_C=bc, num_warps=launch.fwd_warps)
        ctx.save_for_backward(x2, weight, mean, rstd)
        ctx.x_shape, ctx.x_dtype, ctx.launch = x.shape, x.dtype, launch
        return y.view(x.shape)

    @staticmethod
    def backward(ctx, dy):
        x2, weight, mean, rstd = ctx.saved_tensors
        launch = ctx.launch
        m, c = x2.shape
        dy2 = dy.reshape(-1, c).contiguous()
        dx = torch.empty((m, c), dtype=ctx.x_dtype, device=x2.device)
        bm, bc = launch.block_m(c, backward=True), next_pow2(c)
        n_blocks = triton.cdiv(m, bm)
        blocks_per_prog = max(1, triton.cdiv(n_blocks, launch.bwd_programs))
        progs = max(1, triton.cdiv(n_blocks, blocks_per_prog))
        part = torch.empty((2, progs, c), dtype=torch.float32, device=x2.device)  # dw, db
        wb = torch.empty((2, c), dtype=weight.dtype, device=x2.device)
        if m > 0:
            _ln_bwd[(progs,)](x2, weight, dy2, dx, mean, rstd, part[0], part[1], m, c,
                              blocks_per_prog, BLOCK_M=bm, BLOCK_C=bc,
                              STREAM=launch.bwd_stream, num_warps=launch.bwd_warps)
            sum_c = min(bc, 32)
            _ln_bwd_wb[(triton.cdiv(c, sum_c), 2)](part, wb, progs, c, BLOCK_P=128,
                                                   BLOCK_C=sum_c, num_warps=4)
        else:
            wb.zero_()
        return dx.view(ctx.x_shape), wb[0], wb[1], None, None, None


LayerNormOutput = Literal["fp32", "compute"]


def _autocast_output_dtype(x: torch.Tensor, output: LayerNormOutput) -> torch.dtype | None:
    """The dtype to return under autocast, or None outside it."""
    dt = autocast_dtype(x)
    if dt is None:
        return None
    return dt if output == "compute" else torch.float32  # fp32: autocast's layer_norm


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
               eps: float = 1e-5, output: LayerNormOutput = "fp32",
               launch: LayerNormLaunch = DEFAULT_LAUNCH) -> torch.Tensor:
    """LayerNorm over the last dim through Triton; the PyTorch op where Triton can't run."""
    out_dtype = _autocast_output_dtype(x, output)
    if not triton_usable(x):
        y = F.layer_norm(x, (x.shape[-1],), weight, bias, eps)
        return y if out_dtype is None else y.to(out_dtype)
    return _LayerNormFn.apply(x, weight, bias, eps, out_dtype or x.dtype, launch)


class TritonLayerNorm(LayerNorm):
    """Drop-in `LayerNorm` (same parameters and state-dict names) using Triton kernels."""

    output: LayerNormOutput = "fp32"
    launch: LayerNormLaunch = DEFAULT_LAUNCH

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return layer_norm(x, self.weight, self.bias, self.eps, self.output, self.launch)


class ComputeDtypeLayerNorm(LayerNorm):
    """PyTorch's LayerNorm returning the autocast dtype under autocast (`output="compute"`
    on the eager path: the reference for the Triton one, and the CPU route to bf16
    residual streams)."""

    output: LayerNormOutput = "compute"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x, (self.c,), self.weight, self.bias, self.eps)
        out_dtype = _autocast_output_dtype(x, "compute")
        return y if out_dtype is None else y.to(out_dtype)
