"""The outer product mean's output projection without its layout copies.

The plain module (`scalefold.model.pair.OuterProductMean`) forms the outer product
o[i, j, c, e] = Σ_s a[s, i, c] b[s, j, e] and projects it with `linear_out`, which reads
[N, N, c·e] rows. The product comes out of its matmul as [i, c, j, e] (rows (i, c) of
a, columns (j, e) of b), so the [i, j, c, e] the projection needs is a copy of the whole
tensor, 128 MiB per block at crop 256, and its gradient is another copy back: with the
recompute, three per block, 20 ms of an eager H200 profile of one n = 0 step. Replacing
them with this kernel measured −11 ms a step (docs/PERFORMANCE.md; the profile is in
docs/perf-log/2026-11-29_s4.md).

Here the projection reads the product where the matmul put it. Three Triton kernels:
- forward: out[i, j, :] = Σ_(c,e) X[i, c, j, e] W[:, c·E + e] + bias. A program owns a
  [BLOCK_J, c_z] output tile of one i and steps over the c·e inputs in K tiles of 128
  (four c slabs of e = 32 contiguous values per row), one `tl.dot` each.
- dX[i, c, j, :] = dout[i, j, :] · W[:, c, :], written in X's own layout, so the
  matmul's backward takes it without a copy.
- dW[:, (c, e)] = Σ_(i,j) dout[i, j, :]ᵀ X[i, c, j, e], a program per (K tile, chunk of
  rows i), into a [chunks, c_z, c·e] float32 buffer that PyTorch sums (no atomics,
  deterministic).
The bias gradient is PyTorch's sum over dout. Accumulation in float32; outputs in the
input's dtype, as `F.linear` under autocast.

Without gradients the forward kernel can also finish the module's residual update
(`EpilogueOuterProductMean`, `opm_residual_epilogue`): r + out / (eps + count) in its
epilogue, so the projection is never written in bf16 and read back twice by the division
and the add.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from scalefold.kernels._autocast import WeightCasts, autocast_dtype
from scalefold.kernels._triton import dot_precision, next_pow2, tl, triton, triton_usable
from scalefold.kernels.swap import swap
from scalefold.model.pair import OuterProductMean

if triton is not None:

    @triton.jit
    def _x_offsets(js, qs, N, E: tl.constexpr):
        # X[ri] is [C, N, E]; column q of the projection's input is (c, e) = (q // E, q % E)
        return (qs[None, :] // E) * N * E + js[:, None] * E + qs[None, :] % E

    @triton.jit
    def _opm_proj_fwd(X, W, B, OUT, DEN, RES, N, Z, CE: tl.constexpr, E: tl.constexpr,
                      BLOCK_J: tl.constexpr, BLOCK_Z: tl.constexpr, BLOCK_K: tl.constexpr,
                      PREC: tl.constexpr, EPILOGUE: tl.constexpr):
        # X: [R*N, C, N, E]  W: [Z, C*E]  OUT: [R*N, N, Z]; program (row ri, j-block).
        # EPILOGUE: OUT = RES + (X·W + bias) / DEN, DEN: [R*N, N] the mean's denominator
        # (eps + the pairs' count), RES: [R*N, N, Z] the pair stream, all in float32 and
        # rounded once to OUT's dtype
        ri = tl.program_id(0).to(tl.int64)
        js = tl.program_id(1) * BLOCK_J + tl.arange(0, BLOCK_J)
        zs = tl.arange(0, BLOCK_Z)
        jmask = js < N
        zmask = zs < Z
        x_base = X + ri * CE * N
        acc = tl.zeros([BLOCK_J, BLOCK_Z], dtype=tl.float32)
        for q0 in range(0, CE, BLOCK_K):
            qs = q0 + tl.arange(0, BLOCK_K)
            x = tl.load(x_base + _x_offsets(js, qs, N, E), mask=jmask[:, None],
                        other=0.0)  # [BJ, BK]
            wt = tl.load(W + zs[None, :] * CE + qs[:, None], mask=zmask[None, :],
                         other=0.0)  # [BK, BZ]
            acc += tl.dot(x, wt.to(x.dtype), input_precision=PREC)
        bias = tl.load(B + zs, mask=zmask, other=0.0).to(tl.float32)
        acc += bias[None, :]
        tile = ri * N * Z + js[:, None] * Z + zs[None, :]
        omask = jmask[:, None] & zmask[None, :]
        if EPILOGUE:
            den = tl.load(DEN + ri * N + js, mask=jmask, other=1.0).to(tl.float32)
            acc = acc / den[:, None] + tl.load(RES + tile, mask=omask, other=0.0).to(
                tl.float32)
        tl.store(OUT + tile, acc.to(OUT.dtype.element_ty), mask=omask)

    @triton.jit
    def _opm_proj_dx(DOUT, W, DX, N, Z, CE: tl.constexpr, E: tl.constexpr,
                     BLOCK_J: tl.constexpr, BLOCK_Z: tl.constexpr, BLOCK_K: tl.constexpr,
                     PREC: tl.constexpr):
        ri = tl.program_id(0).to(tl.int64)
        js = tl.program_id(1) * BLOCK_J + tl.arange(0, BLOCK_J)
        zs = tl.arange(0, BLOCK_Z)
        jmask = js < N
        zmask = zs < Z
        dout = tl.load(DOUT + ri * N * Z + js[:, None] * Z + zs[None, :],
                       mask=jmask[:, None] & zmask[None, :], other=0.0)  # [BJ, BZ]
        dx_base = DX + ri * CE * N
        for q0 in range(0, CE, BLOCK_K):
            qs = q0 + tl.arange(0, BLOCK_K)
            w = tl.load(W + zs[:, None] * CE + qs[None, :], mask=zmask[:, None],
                        other=0.0)  # [BZ, BK]
            dx = tl.dot(dout, w.to(dout.dtype), input_precision=PREC)  # [BJ, BK]
            tl.store(dx_base + _x_offsets(js, qs, N, E), dx.to(DX.dtype.element_ty),
                     mask=jmask[:, None])

    @triton.jit
    def _opm_proj_dw(DOUT, X, DW_PART, RN, N, Z, rows_per_prog, CE: tl.constexpr,
                     E: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_Z: tl.constexpr,
                     BLOCK_K: tl.constexpr, PREC: tl.constexpr):
        # program (q-block, chunk of rows): dW[:, q-block] summed over the chunk's rows
        qs = tl.program_id(0) * BLOCK_K + tl.arange(0, BLOCK_K)
        chunk = tl.program_id(1)
        zs = tl.arange(0, BLOCK_Z)
        zmask = zs < Z
        acc = tl.zeros([BLOCK_Z, BLOCK_K], dtype=tl.float32)
        for k in range(rows_per_prog):
            ri = (chunk * rows_per_prog + k).to(tl.int64)
            j_end = tl.where(ri < RN, N, 0)  # rows past the last: no-ops
            for j0 in range(0, N, BLOCK_J):
                js = j0 + tl.arange(0, BLOCK_J)
                jmask = js < j_end
                dout = tl.load(DOUT + ri * N * Z + js[:, None] * Z + zs[None, :],
                               mask=jmask[:, None] & zmask[None, :], other=0.0)  # [BJ, BZ]
                x = tl.load(X + ri * CE * N + _x_offsets(js, qs, N, E), mask=jmask[:, None],
                            other=0.0)  # [BJ, BK]
                acc += tl.dot(tl.trans(dout), x.to(dout.dtype), input_precision=PREC)
        tl.store(DW_PART + chunk * Z * CE + zs[:, None] * CE + qs[None, :], acc,
                 mask=zmask[:, None])


_BLOCK_J = 64
# dW programs to aim for ((q-block, chunk of rows) pairs): enough to fill the GPU, few
# partial [c_z, c*e] buffers for PyTorch to sum.
DW_PROGRAMS = 512


def _block_k(ce: int) -> int:
    return min(128, ce)


def _launch_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                    out: torch.Tensor, den: torch.Tensor | None = None,
                    residual: torch.Tensor | None = None) -> None:
    # x: [R, Ni, C, Nj, E] contiguous; weight: [Z, C*E]; bias: [Z]; out, residual:
    # [R, Ni, Nj, Z] contiguous; den: [R, Ni, Nj] contiguous
    r, ni, c, n, e = x.shape
    z = weight.shape[0]
    epilogue = den is not None
    _opm_proj_fwd[(r * ni, triton.cdiv(n, _BLOCK_J))](
        x, weight, bias, out, den if epilogue else out, residual if epilogue else out,
        n, z, c * e, e, BLOCK_J=_BLOCK_J, BLOCK_Z=next_pow2(max(z, 16)),
        BLOCK_K=_block_k(c * e), PREC=dot_precision(x), EPILOGUE=epilogue, num_warps=4)


class _OPMProjectionFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        # x: [R, Ni, C, Nj, E] contiguous; weight: [Z, C*E]; bias: [Z] -> [R, Ni, Nj, Z]
        # (the kernels' rows are the R*Ni pairs (r, i), their N the Nj columns)
        r, ni, _, n, _ = x.shape
        out = torch.empty((r, ni, n, weight.shape[0]), dtype=x.dtype, device=x.device)
        _launch_forward(x, weight, bias, out)
        ctx.save_for_backward(x, weight)
        ctx.bias_dtype = bias.dtype
        return out

    @staticmethod
    def backward(ctx, dout):
        x, weight = ctx.saved_tensors
        r, ni, c, n, e = x.shape
        z, ce = weight.shape[0], c * e
        dout = dout.contiguous()
        bz, bk, prec = next_pow2(max(z, 16)), _block_k(ce), dot_precision(x)
        dx = torch.empty_like(x)
        _opm_proj_dx[(r * ni, triton.cdiv(n, _BLOCK_J))](
            dout, weight, dx, n, z, ce, e, BLOCK_J=_BLOCK_J, BLOCK_Z=bz, BLOCK_K=bk,
            PREC=prec, num_warps=4)
        rows, qblocks = r * ni, ce // bk
        chunks = max(1, min(rows, DW_PROGRAMS // qblocks))
        rows_per_prog = triton.cdiv(rows, chunks)
        chunks = triton.cdiv(rows, rows_per_prog)
        dw_part = torch.empty((chunks, z, ce), dtype=torch.float32, device=x.device)
        _opm_proj_dw[(qblocks, chunks)](
            dout, x, dw_part, rows, n, z, rows_per_prog, ce, e, BLOCK_J=_BLOCK_J,
            BLOCK_Z=bz, BLOCK_K=bk, PREC=prec, num_warps=8)
        dw = dw_part.sum(0).to(weight.dtype)
        db = dout.sum(dim=(0, 1, 2), dtype=torch.float32).to(ctx.bias_dtype)
        return dx, dw, db


def _kernel_applies(x: torch.Tensor, c: int, e: int) -> bool:
    # K tiles of min(128, c·e) columns: c·e a power of two of at least 16 (tl.dot).
    ce = c * e
    return triton_usable(x) and ce >= 16 and ce == next_pow2(ce)


class ProjectedOuterProductMean(OuterProductMean):
    """`OuterProductMean` with the same parameters; the output projection reads the
    outer product in its matmul's layout (see the module docstring)."""

    def _product(self, a: torch.Tensor, b: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # a: [*, S, Ni, c]  b: [*, S, Nj, e] -> the product x [R, Ni, c, Nj, e] and
        # linear_out's weight and bias, in the compute dtype
        s, ni, nj = a.shape[-3], a.shape[-2], b.shape[-2]
        c, e = a.shape[-1], b.shape[-1]
        a2 = a.reshape(-1, s, ni * c)
        b2 = b.reshape(-1, s, nj * e)
        # [R, Ni*c, Nj*e] = aᵀ b: rows (i, c), columns (j, e); the transposed operand is
        # a cuBLAS flag, not a copy
        x = torch.matmul(a2.transpose(-1, -2), b2).view(-1, ni, c, nj, e)
        w, bias = self.linear_out.weight, self.linear_out.bias
        dt = autocast_dtype(x)
        if dt is not None:
            x, w, bias = x.to(dt), w.to(dt), bias.to(dt)
        elif w.dtype != x.dtype:
            w, bias = w.to(x.dtype), bias.to(x.dtype)
        return x.contiguous(), w, bias

    def outer_projection(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # a: [*, S, Ni, c]  b: [*, S, Nj, e] -> [*, Ni, Nj, c_z]
        if not _kernel_applies(a, a.shape[-1], b.shape[-1]):
            return super().outer_projection(a, b)
        outer = _OPMProjectionFn.apply(*self._product(a, b))  # [R, Ni, Nj, c_z]
        return outer.view(*a.shape[:-3], a.shape[-2], b.shape[-2], -1)

    def outer_mean_added(self, a: torch.Tensor, b: torch.Tensor, den: torch.Tensor,
                         r: torch.Tensor) -> torch.Tensor:
        """Without gradients: r + outer_projection(a, b) / den in the projection kernel's
        epilogue, in float32 rounded once to the wider of r's and the compute dtype.
        a: [*, S, Ni, c]  b: [*, S, Nj, e]  den: [*, Ni, Nj, 1]  r: [*, Ni, Nj, c_z]"""
        x, w, bias = self._product(a, b)
        rows = x.shape[0]
        out_dt = torch.promote_types(r.dtype, x.dtype)
        res = r.to(out_dt).reshape(rows, *r.shape[-3:]).contiguous()  # [R, Ni, Nj, c_z]
        den = den.reshape(rows, *den.shape[-3:-1]).contiguous()  # [R, Ni, Nj]
        out = torch.empty_like(res)
        _launch_forward(x, w, bias, out, den, res)
        return out.view(r.shape)


class EpilogueOuterProductMean:
    """`ProjectedOuterProductMean` mixin, without gradients: the residual update
    (`added_to`) as r + outer / (eps + count) in the projection kernel's epilogue, where
    the plain module writes the projection, divides it and adds it in two more passes over
    the pair (the evaluation's compiled glue made them one: 62 ms of a 704-residue chain's
    1,850 on an H100, docs/evidence/2026-12-06_h100_s23 call P3)."""

    weight_casts: WeightCasts | None = None

    def forward(self, m: torch.Tensor, mask: torch.Tensor,
                residual: torch.Tensor | None = None) -> torch.Tensor:
        # residual (from `added_to`): inside the forward, which compile_glue compiles
        if (residual is None or torch.is_grad_enabled() or not _kernel_applies(
                m, self.linear_1.out_features, self.linear_2.out_features)):
            out = super().forward(m, mask)
            return out if residual is None else residual + out
        a, b = self.normalized_project(m, mask)  # each [*, S, N, c]
        run = (_update_untraced if torch.compiler.is_compiling()
               else EpilogueOuterProductMean.update)
        return run(self, a, b, mask, residual)

    def shared_denominator(self, mask: torch.Tensor) -> torch.Tensor:
        """`mean_denominator(mask)` [*, N, N, 1], made once per scope of the forward's
        `weight_casts` where one is given: every block passes the same MSA mask, and its
        count costs a cast, a batched product and an add (the same bits each time)."""
        if self.weight_casts is None:
            return self.mean_denominator(mask)
        key = ("opm_denominator", self.eps, autocast_dtype(mask))
        return self.weight_casts.derived(key, mask,
                                         functools.partial(self.mean_denominator, mask))

    def update(self, a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor,
               residual: torch.Tensor | None) -> torch.Tensor:
        return ProjectedOuterProductMean.outer_mean_added(
            self, a, b, self.shared_denominator(mask), residual)

    def added_to(self, r: torch.Tensor, m: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return super().added_to(r, m, mask)
        return self(m, mask, r)


# Traced by torch.compile (the evaluation's compiled glue), the denominator and the
# launch are a graph break: the launch's grid depends on the length, the denominator is
# looked up in the forward's scope, and under CUDA graphs a break costs no host time.
_update_untraced = torch.compiler.disable(EpilogueOuterProductMean.update, recursive=True)


def swap_outer_product_epilogue(model: nn.Module,
                                casts: WeightCasts | None = None) -> nn.Module:
    """Every `ProjectedOuterProductMean` of `model` (after `swap_outer_product_mean`, and
    after `swap_norm_projections`, whose mixin this one goes in front of) adds its update
    to the pair stream in the projection's epilogue without gradients, in place; with
    `casts`, the masks' count made once per forward."""
    if not any(isinstance(m, ProjectedOuterProductMean) for m in model.modules()):
        raise ValueError("swap_outer_product_epilogue needs swap_outer_product_mean first")
    swap(model, ProjectedOuterProductMean, EpilogueOuterProductMean, weight_casts=casts)
    return model


def swap_outer_product_mean(model: nn.Module) -> nn.Module:
    """Every `OuterProductMean` of `model` projects without layout copies, in place (the
    same submodules and Parameters). Apply before `recompute_outer_product_mean`, which
    wraps the instances' forward as it finds it."""
    from scalefold.kernels.glue import RecomputedInBackward

    if any(isinstance(m, RecomputedInBackward) for m in model.modules()):
        raise ValueError("swap_outer_product_mean must come before "
                         "recompute_outer_product_mean")
    swap(model, OuterProductMean, ProjectedOuterProductMean)
    return model
