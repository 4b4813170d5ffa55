"""The Evoformer's residual update r + dropout(x) as one Triton kernel each way, rounding
exactly as the plain module does in eager PyTorch on CUDA.

Eager, `r + x * keep / (1 - p)` is three passes over the stream's full size (multiply,
divide, add: 7 reads and writes of it, the MSA stream being [*, 512, 256, 256] at the
benchmark's shapes) and its backward two (4). Fused, the forward reads x and r and
writes the sum (3; the mask is one row or column of it), the backward reads the output's
gradient and writes dx (2); dr is the output's gradient itself.

The results are bit-identical to the plain module on CUDA, so swapping it in changes no
training run and needs no convergence check. That takes eager's intermediate rounding:
x · keep / (1 - p) is rounded to x's dtype before the add, and rounding only once (as
`addcmul` does) changes some updates by a bf16 ulp, differences a training run amplifies.
For x in bf16 or fp16 and the output dtype o = promote(r, x), the kernels reproduce eager
CUDA's steps, with inv = float32(1) / float32(1 - p) (PyTorch's CUDA division by a
Python scalar multiplies by that reciprocal):

- forward: y = x-dtype(float32(x · keep) · inv), out = o(float32(r) + float32(y));
- backward: dr = g (cast to r's dtype by autograd when it differs),
  dx = x-dtype(float32(x-dtype(g)) · inv) · keep (autograd first casts g to y's dtype).

bf16 rounding is done on the float32 bits (nearest, ties to even) rather than by
`.to(tl.bfloat16)`: the Triton interpreter, which the CPU tests run, truncates there.
float32 x (where a compiler could contract the multiply and add into one FMA), other
shapes, and tensors Triton cannot run on take the plain module's math. The mask is drawn
exactly as the plain module draws it (same call, shape and dtype), so both draw the
same masks from the same generator state.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from scalefold.kernels._triton import next_pow2, tl, triton, triton_usable
from scalefold.kernels.swap import swap
from scalefold.model.dropout import SharedDropout

if triton is not None:

    @triton.jit
    def _round(v, DT: tl.constexpr):
        """v (float32) rounded to DT, nearest with ties to even, returned as float32."""
        if DT == tl.bfloat16:
            bits = v.to(tl.uint32, bitcast=True)
            bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
            out = tl.where(v != v, v, bits.to(tl.float32, bitcast=True))
        elif DT == tl.float16:
            out = v.to(tl.float16).to(tl.float32)
        else:
            out = v
        return out

    @triton.jit
    def _tile(n_rows, D1, D2, C, sk0, sk1, sk2, sk3, ROWS: tl.constexpr,
              BLOCK_C: tl.constexpr):
        """This program's [ROWS, BLOCK_C] tile of the [B, D1, D2, C] view: flat offsets,
        keep's offsets (through its strides: 0 on the shared dim) and the bounds mask."""
        rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)  # flat (b, i, j)
        cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        j = rows % D2
        i = (rows // D2) % D1
        b = rows // D2 // D1
        krow = b * sk0 + i * sk1 + j * sk2
        offs = rows[:, None] * C + cols[None, :]
        koffs = krow[:, None] + cols[None, :] * sk3
        m = (rows < n_rows)[:, None] & (cols < C)[None, :]
        return offs, koffs, m

    @triton.jit
    def _fwd(X, R, K, OUT, inv, n_rows, D1, D2, C, sk0, sk1, sk2, sk3,
             ROWS: tl.constexpr, BLOCK_C: tl.constexpr):
        offs, koffs, m = _tile(n_rows, D1, D2, C, sk0, sk1, sk2, sk3, ROWS, BLOCK_C)
        x = tl.load(X + offs, mask=m, other=0.0).to(tl.float32)
        k = tl.load(K + koffs, mask=m, other=0.0).to(tl.float32)
        r = tl.load(R + offs, mask=m, other=0.0).to(tl.float32)
        y = _round((x * k) * inv, X.dtype.element_ty)  # eager stores x·keep/(1-p) in x's dtype
        out = _round(r + y, OUT.dtype.element_ty)
        tl.store(OUT + offs, out.to(OUT.dtype.element_ty), mask=m)

    @triton.jit
    def _bwd(G, K, DX, inv, n_rows, D1, D2, C, sk0, sk1, sk2, sk3,
             ROWS: tl.constexpr, BLOCK_C: tl.constexpr):
        offs, koffs, m = _tile(n_rows, D1, D2, C, sk0, sk1, sk2, sk3, ROWS, BLOCK_C)
        # autograd hands the add's gradient to y in y's dtype (a no-op when g has it)
        g = _round(tl.load(G + offs, mask=m, other=0.0).to(tl.float32), DX.dtype.element_ty)
        k = tl.load(K + koffs, mask=m, other=0.0).to(tl.float32)
        dx = _round(g * inv, DX.dtype.element_ty) * k
        tl.store(DX + offs, dx.to(DX.dtype.element_ty), mask=m)


_TILE = 2048  # elements per program
_WARPS = 8


def _launch(kernel, n_rows: int, shape4, keep4: torch.Tensor, *args) -> None:
    # shape4: [B, D1, D2, C]; keep4: keep broadcast to it (stride 0 on the shared dim)
    _, d1, d2, c = shape4
    block_c = min(next_pow2(c), _TILE)
    rows = _TILE // block_c
    grid = (triton.cdiv(n_rows, rows), triton.cdiv(c, block_c))
    kernel[grid](*args, n_rows, d1, d2, c, *keep4.stride(), ROWS=rows, BLOCK_C=block_c,
                 num_warps=_WARPS)


class _ResidualDropoutFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, r, x, keep, inv):
        # r, x: [*, D1, D2, C], the same shape; keep: x's shape with 1 on the shared dim
        shape4 = (-1, *x.shape[-3:])
        x4, r4 = x.reshape(shape4).contiguous(), r.reshape(shape4).contiguous()
        keep4 = keep.reshape(-1, *keep.shape[-3:]).expand(x4.shape)
        out = torch.empty(x4.shape, dtype=torch.promote_types(r.dtype, x.dtype),
                          device=x.device)
        n_rows = x4.shape[0] * x4.shape[1] * x4.shape[2]
        _launch(_fwd, n_rows, x4.shape, keep4, x4, r4, keep4, out, inv)
        ctx.save_for_backward(keep)
        ctx.inv, ctx.x_shape, ctx.x_dtype, ctx.r_dtype = inv, x.shape, x.dtype, r.dtype
        return out.view(x.shape)

    @staticmethod
    def backward(ctx, g):
        (keep,) = ctx.saved_tensors
        dr = dx = None
        if ctx.needs_input_grad[0]:
            dr = g if g.dtype == ctx.r_dtype else g.to(ctx.r_dtype)
        if ctx.needs_input_grad[1]:
            g4 = g.reshape(-1, *g.shape[-3:]).contiguous()
            keep4 = keep.reshape(-1, *keep.shape[-3:]).expand(g4.shape)
            dx = torch.empty(g4.shape, dtype=ctx.x_dtype, device=g.device)
            n_rows = g4.shape[0] * g4.shape[1] * g4.shape[2]
            _launch(_bwd, n_rows, g4.shape, keep4, g4, keep4, dx, ctx.inv)
            dx = dx.view(ctx.x_shape)
        return dr, dx, None, None


def _kernel_applies(r: torch.Tensor, x: torch.Tensor, shared_dim: int) -> bool:
    return (x.dtype in (torch.bfloat16, torch.float16) and r.dtype in (x.dtype, torch.float32)
            and r.shape == x.shape and r.device == x.device and x.dim() >= 3
            and shared_dim % x.dim() >= x.dim() - 3 and x.numel() > 0 and triton_usable(x))


class FusedResidualDropout(SharedDropout):
    def residual_masked(self, r: torch.Tensor, x: torch.Tensor,
                        keep: torch.Tensor) -> torch.Tensor:
        if not _kernel_applies(r, x, self.shared_dim) or keep.shape[self.shared_dim] != 1:
            return super().residual_masked(r, x, keep)
        inv = np.float32(1.0) / np.float32(1.0 - self.p)  # what CUDA's scalar division uses
        return _ResidualDropoutFn.apply(r, x, keep, float(inv))


def swap_residual_dropout(model: nn.Module) -> nn.Module:
    """Every `SharedDropout`'s residual update as one kernel each way; returns `model`."""
    swap(model, SharedDropout, FusedResidualDropout)
    return model
