"""The outer product mean's output projection without its layout copies.

The plain module (`scalefold.model.pair.OuterProductMean`) forms the outer product
o[i, j, c, e] = Σ_s a[s, i, c] b[s, j, e] and projects it with `linear_out`, which reads
[N, N, c·e] rows. The product comes out of its matmul as [i, c, j, e] (rows (i, c) of
a, columns (j, e) of b), so the [i, j, c, e] the projection needs is a copy of the whole
tensor, 128 MiB per block at crop 256, and its gradient is another copy back: with the
recompute, three per block, 20 ms of the eager H200 profile (docs/PERFORMANCE.md,
session 4).

Here the projection reads the product where the matmul put it. Three Triton kernels:
- forward: out[i, j, :] = Σ_c X[i, c, j, :] · W[:, c, :]ᵀ + bias. A program owns a
  [BLOCK_J, c_z] output tile of one i and steps over c; each step is one `tl.dot` of a
  contiguous [BLOCK_J, e] slab of X with the c-th [c_z, e] slice of W.
- dX[i, c, j, :] = dout[i, j, :] · W[:, c, :], written in X's own layout, so the
  matmul's backward takes it without a copy.
- dW[:, c, :] = Σ_{i,j} dout[i, j, :]ᵀ X[i, c, j, :], reduced over i in chunks into a
  [chunks, c_z, c·e] float32 buffer that PyTorch sums (no atomics, deterministic).
The bias gradient is PyTorch's sum over dout. Accumulation in float32; outputs in the
input's dtype, as `F.linear` under autocast.
"""

from __future__ import annotations

import torch
from torch import nn

from scalefold.kernels._autocast import autocast_dtype
from scalefold.kernels._triton import dot_precision, next_pow2, tl, triton, triton_usable
from scalefold.model.pair import OuterProductMean

if triton is not None:

    @triton.jit
    def _opm_proj_fwd(X, W, B, OUT, N, C: tl.constexpr, E: tl.constexpr, Z,
                      BLOCK_J: tl.constexpr, BLOCK_Z: tl.constexpr, PREC: tl.constexpr):
        # X: [R, N, C, N, E]  W: [Z, C*E]  OUT: [R, N, N, Z]; program: (i + r*N, j-block)
        ri = tl.program_id(0).to(tl.int64)  # r * N + i
        js = tl.program_id(1) * BLOCK_J + tl.arange(0, BLOCK_J)
        es = tl.arange(0, E)
        zs = tl.arange(0, BLOCK_Z)
        jmask = js < N
        zmask = zs < Z
        x_base = X + ri * C * N * E
        acc = tl.zeros([BLOCK_J, BLOCK_Z], dtype=tl.float32)
        for c in range(C):
            x = tl.load(x_base + c * N * E + js[:, None] * E + es[None, :],
                        mask=jmask[:, None], other=0.0)  # [BJ, E]
            wt = tl.load(W + zs[None, :] * (C * E) + c * E + es[:, None],
                         mask=zmask[None, :], other=0.0)  # [E, BZ]
            acc += tl.dot(x, wt, input_precision=PREC)
        bias = tl.load(B + zs, mask=zmask, other=0.0).to(tl.float32)
        acc += bias[None, :]
        tl.store(OUT + ri * N * Z + js[:, None] * Z + zs[None, :],
                 acc.to(OUT.dtype.element_ty), mask=jmask[:, None] & zmask[None, :])

    @triton.jit
    def _opm_proj_dx(DOUT, W, DX, N, C: tl.constexpr, E: tl.constexpr, Z,
                     BLOCK_J: tl.constexpr, BLOCK_Z: tl.constexpr, PREC: tl.constexpr):
        ri = tl.program_id(0).to(tl.int64)
        js = tl.program_id(1) * BLOCK_J + tl.arange(0, BLOCK_J)
        es = tl.arange(0, E)
        zs = tl.arange(0, BLOCK_Z)
        jmask = js < N
        zmask = zs < Z
        dout = tl.load(DOUT + ri * N * Z + js[:, None] * Z + zs[None, :],
                       mask=jmask[:, None] & zmask[None, :], other=0.0)  # [BJ, BZ]
        dx_base = DX + ri * C * N * E
        for c in range(C):
            w = tl.load(W + zs[:, None] * (C * E) + c * E + es[None, :],
                        mask=zmask[:, None], other=0.0)  # [BZ, E]
            dx = tl.dot(dout, w.to(dout.dtype), input_precision=PREC)  # [BJ, E]
            tl.store(dx_base + c * N * E + js[:, None] * E + es[None, :],
                     dx.to(DX.dtype.element_ty), mask=jmask[:, None])

    @triton.jit
    def _opm_proj_dw(DOUT, X, DW_PART, RN, N, rows_per_prog, C: tl.constexpr,
                     E: tl.constexpr, Z, BLOCK_J: tl.constexpr, BLOCK_Z: tl.constexpr,
                     PREC: tl.constexpr):
        # program (c, chunk): dW[:, c, :] over the chunk's rows ri = r*N + i
        c = tl.program_id(0)
        chunk = tl.program_id(1)
        es = tl.arange(0, E)
        zs = tl.arange(0, BLOCK_Z)
        zmask = zs < Z
        acc = tl.zeros([BLOCK_Z, E], dtype=tl.float32)
        for k in range(rows_per_prog):
            ri = (chunk * rows_per_prog + k).to(tl.int64)
            j_end = tl.where(ri < RN, N, 0)  # rows past the last: no-ops
            for j0 in range(0, N, BLOCK_J):
                js = j0 + tl.arange(0, BLOCK_J)
                jmask = js < j_end
                dout = tl.load(DOUT + ri * N * Z + js[:, None] * Z + zs[None, :],
                               mask=jmask[:, None] & zmask[None, :], other=0.0)  # [BJ, BZ]
                x = tl.load(X + ri * C * N * E + c * N * E + js[:, None] * E + es[None, :],
                            mask=jmask[:, None], other=0.0)  # [BJ, E]
                acc += tl.dot(tl.trans(dout), x.to(dout.dtype), input_precision=PREC)
        tl.store(DW_PART + chunk * Z * C * E + zs[:, None] * (C * E) + c * E + es[None, :],
                 acc, mask=zmask[:, None])


_BLOCK_J = 64
# dW chunks: enough (c, chunk) programs to fill the GPU, few partial rows to sum.
DW_PROGRAMS = 512


class _OPMProjectionFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        # x: [R, N, C, N, E] contiguous; weight: [Z, C*E]; bias: [Z] -> [R, N, N, Z]
        r, n, c, _, e = x.shape
        z = weight.shape[0]
        out = torch.empty((r, n, n, z), dtype=x.dtype, device=x.device)
        bz = next_pow2(max(z, 16))
        _opm_proj_fwd[(r * n, triton.cdiv(n, _BLOCK_J))](
            x, weight, bias, out, n, c, e, z, BLOCK_J=_BLOCK_J, BLOCK_Z=bz,
            PREC=dot_precision(x), num_warps=4)
        ctx.save_for_backward(x, weight)
        ctx.bias_dtype = bias.dtype
        return out

    @staticmethod
    def backward(ctx, dout):
        x, weight = ctx.saved_tensors
        r, n, c, _, e = x.shape
        z = weight.shape[0]
        dout = dout.contiguous()
        bz = next_pow2(max(z, 16))
        dx = torch.empty_like(x)
        _opm_proj_dx[(r * n, triton.cdiv(n, _BLOCK_J))](
            dout, weight, dx, n, c, e, z, BLOCK_J=_BLOCK_J, BLOCK_Z=bz,
            PREC=dot_precision(x), num_warps=4)
        rows = r * n
        chunks = max(1, min(rows, DW_PROGRAMS // c))
        rows_per_prog = triton.cdiv(rows, chunks)
        chunks = triton.cdiv(rows, rows_per_prog)
        dw_part = torch.empty((chunks, z, c * e), dtype=torch.float32, device=x.device)
        _opm_proj_dw[(c, chunks)](dout, x, dw_part, rows, n, rows_per_prog, c, e, z,
                                  BLOCK_J=_BLOCK_J, BLOCK_Z=bz, PREC=dot_precision(x),
                                  num_warps=4)
        dw = dw_part.sum(0).to(weight.dtype)
        db = dout.sum(dim=(0, 1, 2), dtype=torch.float32).to(ctx.bias_dtype)
        return dx, dw, db


def _kernel_applies(x: torch.Tensor, c: int, e: int) -> bool:
    # tl.dot needs inner dims of at least 16; E is a tile width, a power of two.
    return triton_usable(x) and c >= 1 and e >= 16 and e == next_pow2(e)


class ProjectedOuterProductMean(OuterProductMean):
    """`OuterProductMean` with the same parameters; the output projection reads the
    outer product in its matmul's layout (see the module docstring)."""

    def forward(self, m: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # m: [*, S, N, c_m]  mask: [*, S, N]
        c, e = self.linear_1.out_features, self.linear_2.out_features
        if not _kernel_applies(m, c, e):
            return super().forward(m, mask)
        m = self.layer_norm(m)
        mask = mask.unsqueeze(-1)  # [*, S, N, 1]
        a = self.linear_1(m) * mask  # [*, S, N, c]
        b = self.linear_2(m) * mask  # [*, S, N, e]
        lead, (s, n) = a.shape[:-3], a.shape[-3:-1]
        a2 = a.reshape(-1, s, n * c)
        b2 = b.reshape(-1, s, n * e)
        # [R, N*c, N*e] = aᵀ b: rows (i, c), columns (j, e); the transposed operand is a
        # cuBLAS flag, not a copy
        x = torch.matmul(a2.transpose(-1, -2), b2).view(-1, n, c, n, e)
        w, bias = self.linear_out.weight, self.linear_out.bias
        dt = autocast_dtype(x)
        if dt is not None:
            x, w, bias = x.to(dt), w.to(dt), bias.to(dt)
        elif w.dtype != x.dtype:
            w, bias = w.to(x.dtype), bias.to(x.dtype)
        outer = _OPMProjectionFn.apply(x.contiguous(), w, bias)  # [R, N, N, c_z]
        outer = outer.view(*lead, n, n, -1)
        norm = torch.einsum("...sik,...sjk->...ijk", mask, mask)  # [*, N, N, 1]
        return outer / (self.eps + norm)


def swap_outer_product_mean(model: nn.Module) -> nn.Module:
    """Every `OuterProductMean` of `model` projects without layout copies, in place (the
    same submodules and Parameters). Apply before `recompute_outer_product_mean`, which
    wraps the instances' forward as it finds it."""
    for mod in model.modules():
        if type(mod) is OuterProductMean:
            if getattr(mod.forward, "__scalefold_recompute__", False):
                raise ValueError("swap_outer_product_mean must come before "
                                 "recompute_outer_product_mean")
            mod.__class__ = ProjectedOuterProductMean
    return model
