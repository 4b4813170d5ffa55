"""Self-attention's query, key, value and gate projections as one matmul.

`Attention` projects its input with four Linears (q, k, v without bias, the gate with
one). Where queries and keys come from the same tensor (MSA row and column attention,
both triangle attentions: every Attention but the template pointwise one), the four are
one matmul against the stacked weight [4·H·c, c_in]:

- forward: the input is read once instead of four times, one GEMM launch instead of four;
- backward: one GEMM for dx with K = 4·H·c (the four products summed in its fp32
  accumulator, not rounded to bf16 and added by three `add_` kernels as autograd sums
  the gradients of a reused input), one GEMM for the stacked weight gradient, the gate's
  bias gradient as a matvec over its columns only. The price: the four outputs'
  gradients are concatenated once (one pass over [*, 4·H·c]).

The stacked bias is [0 (3·H·c), b_g]: the GEMM's bias epilogue adds it before the one
rounding, as `F.linear` adds the gate's bias, and adding zero leaves q, k and v exact.
The forward without gradients has the bits of the separate projections wherever cuBLAS
computes each output element's dot product the same way (no split-K at these shapes);
with gradients, dx rounds once instead of four times (not bit-identical to the plain
module; the 5-seed check covers it).

Parameters and state-dict names are untouched (the stacked weight is made per forward;
without gradients, once per autocast region with `cached_weight_casts`).
"""

from __future__ import annotations

import torch

from scalefold.kernels._autocast import WeightCasts, autocast_dtype
from scalefold.kernels.linear import _LinearMatvecBiasGrad, bias_grad_ones, pad_bias
from scalefold.kernels.swap import swap
from scalefold.model.attention import Attention


def stack_cast(params: list[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    """The parameters concatenated along dim 0 and cast to `dtype`: one kernel without
    gradients (cat writes the cast values), cat then cast with them."""
    if (torch.compiler.is_compiling()  # compiled: one fused kernel either way
            or torch.is_grad_enabled() and any(p.requires_grad for p in params)):
        return torch.cat(params).to(dtype)
    out = torch.empty((sum(p.shape[0] for p in params), *params[0].shape[1:]),
                      dtype=dtype, device=params[0].device)
    return torch.cat(params, out=out)


def _linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None,
            casts: WeightCasts | None) -> torch.Tensor:
    """x Wᵀ + b with w and b already in the compute dtype: under autocast x is cast as
    autocast casts a linear's input and the product runs with autocast off."""
    dt = autocast_dtype(x)
    ones = None if b is None else bias_grad_ones(casts, x, w.dtype)
    if dt is None:
        return _LinearMatvecBiasGrad.apply(x, w, b, ones)
    with torch.autocast(x.device.type, enabled=False):
        return _LinearMatvecBiasGrad.apply(x.to(dt), w, b, ones)


class StackedProjectionAttention(Attention):
    """`Attention` (same parameters, same state-dict names) whose projections of one
    input run as one matmul. `weight_casts` (set by `swap_attention_projections`): where
    its scope is open, the stacked weight is made once per autocast region for the code
    without gradients."""

    weight_casts: WeightCasts | None = None

    def stacked_weight(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
        """[q; k; v; g] in `dtype` and the gate's bias (the last rows'; padded with the
        zeros of q, k and v where the weight casts' cache holds it)."""
        ws = [self.linear_q.weight, self.linear_k.weight, self.linear_v.weight]
        if self.linear_g is not None:
            ws.append(self.linear_g.weight)
        b = None if self.linear_g is None else self.linear_g.bias

        def make() -> tuple[torch.Tensor, torch.Tensor | None]:
            return stack_cast(ws, dtype), None if b is None else b.to(dtype)

        def make_padded() -> tuple[torch.Tensor, torch.Tensor | None]:
            # Without gradients the bias is only the GEMM's epilogue operand: padded with
            # the zeros of q, k, v here once, not by `_LinearMatvecBiasGrad` on every call
            # (the same F.linear on the same values).
            w, bias = make()
            return w, None if bias is None else pad_bias(bias, w.shape[0])

        if self.weight_casts is None or not self.weight_casts.caching():
            return make()
        return self.weight_casts.cached(("stacked_qkvg", id(self), dtype), make_padded)

    def projections(self, q_x: torch.Tensor, kv_x: torch.Tensor):
        if q_x is not kv_x:  # cross attention (template pointwise): separate inputs
            return super().projections(q_x, kv_x)
        # q_x: [*, L, c_in] -> q, k, v, g: each [*, L, H·c], views of one [*, L, 4·H·c]
        dt = autocast_dtype(q_x)
        y = _linear(q_x, *self.stacked_weight(dt if dt is not None else q_x.dtype),
                    self.weight_casts)
        return self.split_stacked(y)

    def split_stacked(self, y: torch.Tensor) -> tuple:
        """q, k, v and g (None without gating), views of the stacked projection y
        [*, L, 4·H·c]."""
        q, k, v, *g = y.split(self.num_heads * self.c_hidden, dim=-1)
        return q, k, v, (g[0] if g else None)


def swap_attention_projections(model: torch.nn.Module,
                               weight_casts: WeightCasts | None = None) -> torch.nn.Module:
    """Every `Attention` of `model` becomes a `StackedProjectionAttention`, in place,
    sharing `weight_casts` if given. Returns `model`."""
    swap(model, Attention, StackedProjectionAttention, weight_casts=weight_casts)
    return model

