"""The sigmoid gate x · sigmoid(g) as one Triton kernel each way.

PyTorch runs the gate as two kernels forward (sigmoid, multiply) and three backward
(two multiplies and `sigmoid_backward`), each a full pass over [*, N, N, c]-sized
tensors: 14 reads and writes of the tensor's size. Fused, the forward reads x and g
and writes y (3), the backward reads dy, x, g and writes dx, dg (5). Math in float32,
one rounding to the output dtype (eager rounds sigmoid(g) to bf16 first).
"""

from __future__ import annotations

import torch

from scalefold.kernels._triton import tl, triton, triton_usable
from scalefold.kernels.swap import swap
from scalefold.model.primitives import SigmoidGate

if triton is not None:

    @triton.jit
    def _gate_fwd(X, G, Y, n, C, SG, BLOCK: tl.constexpr):
        # g: rows of C values SG apart (SG == C: contiguous)
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        m = offs < n
        row = offs // C
        g_offs = row * SG + (offs - row * C)
        x = tl.load(X + offs, mask=m, other=0.0).to(tl.float32)
        g = tl.load(G + g_offs, mask=m, other=0.0).to(tl.float32)
        tl.store(Y + offs, (x * tl.sigmoid(g)).to(Y.dtype.element_ty), mask=m)

    @triton.jit
    def _gate_bwd(X, G, DY, DX, DG, n, C, SG, BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        m = offs < n
        row = offs // C
        g_offs = row * SG + (offs - row * C)
        x = tl.load(X + offs, mask=m, other=0.0).to(tl.float32)
        g = tl.load(G + g_offs, mask=m, other=0.0).to(tl.float32)
        dy = tl.load(DY + offs, mask=m, other=0.0).to(tl.float32)
        s = tl.sigmoid(g)
        tl.store(DX + offs, (dy * s).to(DX.dtype.element_ty), mask=m)
        tl.store(DG + offs, (dy * x * s * (1.0 - s)).to(DG.dtype.element_ty), mask=m)


_BLOCK = 2048


class _GateFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, g, sg):
        # x: contiguous; g: the same shape and dtype, rows of the last dim sg apart
        # (checked by the caller)
        y = torch.empty_like(x)
        n, c = x.numel(), x.shape[-1]
        _gate_fwd[(triton.cdiv(n, _BLOCK),)](x, g, y, n, c, sg, BLOCK=_BLOCK, num_warps=8)
        ctx.save_for_backward(x, g)
        ctx.sg = sg
        return y

    @staticmethod
    def backward(ctx, dy):
        x, g = ctx.saved_tensors
        dy = dy.contiguous()
        dx = torch.empty_like(x)
        dg = torch.empty(g.shape, dtype=g.dtype, device=g.device)  # contiguous
        n, c = x.numel(), x.shape[-1]
        _gate_bwd[(triton.cdiv(n, _BLOCK),)](x, g, dy, dx, dg, n, c, ctx.sg, BLOCK=_BLOCK,
                                             num_warps=8)
        return dx, dg, None


def _row_stride(t: torch.Tensor) -> int | None:
    """The distance between t's rows (of its last dim) when they lie at one spacing: a
    contiguous tensor, or a slice of one along the last dim (the gate's part of the
    stacked attention projections); None otherwise."""
    if t.dim() == 0 or t.stride(-1) != 1:
        return None
    if t.dim() == 1:
        return t.shape[-1]
    sg = want = t.stride(-2)
    for i in range(t.dim() - 2, 0, -1):  # each leading dim: the next one's span
        want *= t.shape[i]
        if t.shape[i - 1] != 1 and t.stride(i - 1) != want:
            return None
    return sg if sg >= t.shape[-1] else None


def sigmoid_gate(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """x · sigmoid(g) through the fused kernels where they apply (same shape and dtype,
    x contiguous, g rows at one spacing, Triton usable here), else PyTorch's math."""
    sg = _row_stride(g)
    if (not triton_usable(x) or x.shape != g.shape or x.dtype != g.dtype
            or not x.is_contiguous() or sg is None):
        return x * torch.sigmoid(g)
    return _GateFn.apply(x, g, sg)


class TritonSigmoidGate(SigmoidGate):
    """`SigmoidGate` through the fused Triton kernels."""

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return sigmoid_gate(x, g)


def swap_gates(model: torch.nn.Module) -> torch.nn.Module:
    """Every `SigmoidGate` of `model` becomes a `TritonSigmoidGate`, in place."""
    swap(model, SigmoidGate, TritonSigmoidGate)
    return model
