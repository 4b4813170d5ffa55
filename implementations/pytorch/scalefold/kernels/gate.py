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
    def _gate_fwd(X, G, Y, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        m = offs < n
        x = tl.load(X + offs, mask=m, other=0.0).to(tl.float32)
        g = tl.load(G + offs, mask=m, other=0.0).to(tl.float32)
        tl.store(Y + offs, (x * tl.sigmoid(g)).to(Y.dtype.element_ty), mask=m)

    @triton.jit
    def _gate_bwd(X, G, DY, DX, DG, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        m = offs < n
        x = tl.load(X + offs, mask=m, other=0.0).to(tl.float32)
        g = tl.load(G + offs, mask=m, other=0.0).to(tl.float32)
        dy = tl.load(DY + offs, mask=m, other=0.0).to(tl.float32)
        s = tl.sigmoid(g)
        tl.store(DX + offs, (dy * s).to(DX.dtype.element_ty), mask=m)
        tl.store(DG + offs, (dy * x * s * (1.0 - s)).to(DG.dtype.element_ty), mask=m)


_BLOCK = 2048


class _GateFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, g):
        # x, g: the same shape, dtype and contiguous layout (checked by the caller)
        y = torch.empty_like(x)
        n = x.numel()
        _gate_fwd[(triton.cdiv(n, _BLOCK),)](x, g, y, n, BLOCK=_BLOCK, num_warps=8)
        ctx.save_for_backward(x, g)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, g = ctx.saved_tensors
        dy = dy.contiguous()
        dx, dg = torch.empty_like(x), torch.empty_like(g)
        n = x.numel()
        _gate_bwd[(triton.cdiv(n, _BLOCK),)](x, g, dy, dx, dg, n, BLOCK=_BLOCK, num_warps=8)
        return dx, dg


def sigmoid_gate(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """x · sigmoid(g) through the fused kernels where they apply (same shape, dtype and
    contiguous layout, Triton usable here), else PyTorch's math."""
    if (not triton_usable(x) or x.shape != g.shape or x.dtype != g.dtype
            or not x.is_contiguous() or not g.is_contiguous()):
        return x * torch.sigmoid(g)
    return _GateFn.apply(x, g)


class TritonSigmoidGate(SigmoidGate):
    """`SigmoidGate` through the fused Triton kernels."""

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return sigmoid_gate(x, g)


def swap_gates(model: torch.nn.Module) -> torch.nn.Module:
    """Every `SigmoidGate` of `model` becomes a `TritonSigmoidGate`, in place."""
    swap(model, SigmoidGate, TritonSigmoidGate)
    return model
