"""`Linear` whose bias gradient is a matrix-vector product instead of a column sum.

PyTorch's linear backward computes the bias gradient as dy.sum(0) over all leading
positions. On the pair representation that is a [65536, 128] bf16 reduction along the
long dim, which PyTorch's reduce kernel runs at ~53 µs on an H200 (~300 GB/s); the model
does it ~940 times a step (every biased projection of z: triangle multiplication,
triangle-attention gates and outputs, transitions, outer product mean), ~50 ms of a
~630 ms backward step (`bench step --profile`, docs/PERFORMANCE.md). Here the same sum
is dyᵀ·1, a cuBLAS matrix-vector product that streams dy once.

Everything else is F.linear's math: the forward is F.linear, dx = dy·W and dW = dyᵀ·x.
Under autocast the inputs are cast the way autocast casts a linear (to the autocast
dtype), and the function runs with autocast off, so its saved tensors and gradients are
in that dtype and the casts' own backward returns float32 gradients to the master
weights, as with autocast's linear.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from scalefold.kernels._autocast import WeightCasts, autocast_dtype
from scalefold.kernels.swap import swap
from scalefold.model.primitives import Linear


def pad_bias(bias: torch.Tensor, out_features: int) -> torch.Tensor:
    """The bias of only the last bias.numel() of `out_features` outputs (stacked
    projections of which only the last has a bias) as a full bias: zeros before it."""
    return F.pad(bias, (out_features - bias.numel(), 0))


def bias_grad_ones(casts: WeightCasts | None, x: torch.Tensor,
                   dtype: torch.dtype) -> torch.Tensor | None:
    """The ones vector [rows of x] a bias gradient's matvec multiplies by, shared by every
    Linear of the forward whose scope `casts` has open (one fill kernel per shape and
    forward, not one per biased Linear in backward); None where nothing is shared (the
    backward then fills its own)."""
    if casts is None or not casts.scoped() or not torch.is_grad_enabled():
        return None
    rows = x.numel() // x.shape[-1]
    return casts.constant(("bias_grad_ones", rows, dtype, x.device),
                          lambda: torch.ones(rows, dtype=dtype, device=x.device))


class _LinearMatvecBiasGrad(torch.autograd.Function):
    """y = x Wᵀ + b with the bias gradient as a matvec. `b` may be the bias of only the
    last b.numel() outputs (stacked projections of which only the last has a bias): the
    others get zero, added by the GEMM's epilogue like any bias. `ones`: the matvec's
    ones vector if the caller shares one (`bias_grad_ones`)."""

    @staticmethod
    def forward(ctx, x, weight, bias, ones=None):
        # x: [*, in]  weight: [out, in]  bias: [n_b <= out] or None  ones: [rows] or None
        ctx.save_for_backward(x, weight)
        # Not a saved tensor: a recomputation under activation checkpointing (outside the
        # scope that shares the ones) must save as many tensors as the forward did.
        ctx.ones = ones
        ctx.n_bias = 0 if bias is None else bias.numel()
        if bias is not None and ctx.n_bias < weight.shape[0]:
            bias = pad_bias(bias, weight.shape[0])
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, dy):
        # dy: [*, out]
        x, weight = ctx.saved_tensors
        ones = ctx.ones
        dy2 = dy.reshape(-1, dy.shape[-1])  # [P, out]
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = dy.matmul(weight)  # [*, in]
        if ctx.needs_input_grad[1]:
            dw = dy2.t().mm(x.reshape(-1, x.shape[-1]))  # [out, in]
        if ctx.n_bias and ctx.needs_input_grad[2]:
            g = dy2[:, dy2.shape[1] - ctx.n_bias:]  # [P, n_b] (all of dy2 for a full bias)
            if ones is None or ones.dtype != g.dtype:
                ones = g.new_ones(g.shape[0])
            db = g.t().mv(ones)  # [n_b]
        return dx, dw, db, None


class MatvecBiasGradLinear(Linear):
    """`Linear` (same parameters, same state-dict names) with the matvec bias gradient.

    `weight_casts` (set by `swap_linears`): where its scope is open, the weight and bias
    are cast to the autocast dtype once per autocast region instead of once per call.
    """

    weight_casts: WeightCasts | None = None

    def _cast(self, p: torch.Tensor, dt: torch.dtype) -> torch.Tensor:
        return p.to(dt) if self.weight_casts is None else self.weight_casts.cast(p, dt)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dev = x.device.type
        dt = autocast_dtype(x)
        ones = bias_grad_ones(self.weight_casts, x, dt if dt is not None else x.dtype)
        if dt is not None:
            b = None if self.bias is None else self._cast(self.bias, dt)
            with torch.autocast(dev, enabled=False):
                return _LinearMatvecBiasGrad.apply(x.to(dt), self._cast(self.weight, dt), b,
                                                   ones)
        return _LinearMatvecBiasGrad.apply(x, self.weight, self.bias, ones)


def swap_linears(model: torch.nn.Module,
                 weight_casts: WeightCasts | None = None) -> torch.nn.Module:
    """Every biased `Linear` of `model` becomes a `MatvecBiasGradLinear`, in place (the
    same Parameter objects: optimizer state and state dict carry over), sharing
    `weight_casts` if given. Returns `model`."""
    swap(model, Linear, MatvecBiasGradLinear, where=lambda m: m.bias is not None)
    if weight_casts is not None:
        for m in model.modules():
            if isinstance(m, MatvecBiasGradLinear):
                m.weight_casts = weight_casts
    return model
