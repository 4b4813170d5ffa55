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

Triangle attention also projects the same normalised z to its bias (H = 4 columns, no
bias term): `StackedBiasTriangleAttention` puts that weight first in the stack, padded
with zero rows to 16 columns so that every later part stays aligned, which removes a
skinny GEMM (N = H) from the forward and, from the backward, that projection's input-
gradient GEMM, the add of its result into z's gradient and its weight-gradient GEMM.

The outer product mean projects the normalised MSA twice (`linear_1`, `linear_2`, both
c_m → 32 with biases): `StackedOuterProductProjections` makes them one GEMM against the
stacked weight [64, c_m] and bias, which reads the MSA (16 MiB in the Evoformer at the
crop, 32 MiB in the extra-MSA stack) once, and in backward takes its gradient from one
GEMM (the two summed in fp32, not rounded and added) and both weight gradients from one.

Parameters and state-dict names are untouched (the stacked weight is made per forward;
without gradients, once per autocast region with `cached_weight_casts`).
"""

from __future__ import annotations

import torch

from scalefold.kernels._autocast import WeightCasts, autocast_dtype
from scalefold.kernels.linear import _LinearMatvecBiasGrad, bias_grad_ones, pad_bias
from scalefold.kernels.swap import swap
from scalefold.model.attention import Attention
from scalefold.model.pair import OuterProductMean, TriangleAttention


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

    def _stacked(self, dtype: torch.dtype, lead: tuple[torch.Tensor, ...] = (),
                 pad: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
        # [lead weights; `pad` zero rows; q; k; v; g] and the gate's bias (the last rows')
        ws = [*lead, self.linear_q.weight, self.linear_k.weight, self.linear_v.weight]
        if self.linear_g is not None:
            ws.append(self.linear_g.weight)
        b = None if self.linear_g is None else self.linear_g.bias

        def make() -> tuple[torch.Tensor, torch.Tensor | None]:
            parts = ws
            if pad:
                zeros = self._constant(("zero_rows", pad, ws[0].shape[1], ws[0].device),
                                       lambda: ws[0].new_zeros(pad, ws[0].shape[1]))
                parts = [*lead, zeros, *ws[len(lead):]]
            return stack_cast(parts, dtype), None if b is None else b.to(dtype)

        def make_padded() -> tuple[torch.Tensor, torch.Tensor | None]:
            # Without gradients the bias is only the GEMM's epilogue operand: padded with
            # the zeros of q, k, v here once, not by `_LinearMatvecBiasGrad` on every call
            # (the same F.linear on the same values).
            w, bias = make()
            return w, None if bias is None else pad_bias(bias, w.shape[0])

        if self.weight_casts is None or not self.weight_casts.caching():
            return make()
        key = ("stacked_qkvg", id(self), dtype, tuple(id(p) for p in lead), pad)
        return self.weight_casts.cached(key, make_padded)

    def _constant(self, key: tuple, make):
        return make() if self.weight_casts is None else self.weight_casts.constant(key, make)

    def project_stacked(self, x: torch.Tensor, lead: tuple[torch.Tensor, ...] = (),
                        pad: int = 0) -> torch.Tensor:
        """x [*, c_in] -> [*, Σ rows]: the lead weights' outputs, `pad` zero columns, then
        q, k, v and the gate's logits, as one matmul."""
        dt = autocast_dtype(x)
        return _linear(x, *self._stacked(dt if dt is not None else x.dtype, lead, pad),
                       self.weight_casts)

    def projections(self, q_x: torch.Tensor, kv_x: torch.Tensor):
        if q_x is not kv_x:  # cross attention (template pointwise): separate inputs
            return super().projections(q_x, kv_x)
        # q_x: [*, L, c_in] -> q, k, v, g: each [*, L, H·c], views of one [*, L, 4·H·c]
        y = self.project_stacked(q_x)
        q, k, v, *g = y.split(self.num_heads * self.c_hidden, dim=-1)
        return q, k, v, (g[0] if g else None)


# The triangle bias's columns of the stacked output are padded to a multiple of 16
# elements: the row stride and the offsets of q, k, v and g then stay multiples of 32
# bytes, which cuBLAS's tensor-core kernels and the attention kernels' vector loads rely on.
_ALIGN = 16


class StackedBiasTriangleAttention(TriangleAttention):
    """`TriangleAttention` (same parameters) whose bias projection joins the attention's
    stacked q, k, v and gate projections of the same normalised z: one GEMM reads z
    (not two), and in backward z's gradient comes from one GEMM with the bias's four
    columns summed in its fp32 accumulator, not from a fifth GEMM, its rounding and an
    add; the bias's weight gradient is part of the stacked one. Needs `mha` to be a
    `StackedProjectionAttention`."""

    def project(self, z: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        mha = self.mha
        if not isinstance(mha, StackedProjectionAttention):
            return super().project(z)
        h = self.linear.out_features
        pad = -h % _ALIGN
        y = mha.project_stacked(z, lead=(self.linear.weight,), pad=pad)
        hc = mha.num_heads * mha.c_hidden
        sizes = [h, pad] + [hc] * (4 if mha.linear_g is not None else 3)
        # one split (its backward is one concatenation of the gradients, zeros for the pad)
        tri, _, q, k, v, *g = y.split(sizes, dim=-1)  # tri: [*, I, J, H]; q..g [*, I, J, H·c]
        return tri, (q, k, v, (g[0] if g else None))


class StackedOuterProductProjections:
    """Mixin for `OuterProductMean` (`scalefold.kernels.swap`): `project` as one matmul
    against the stacked weights of `linear_1` and `linear_2` (and their stacked biases);
    the same Parameters. `weight_casts` (set by `swap_outer_product_projections`): where
    its scope is open, the stacked weight is made once per autocast region for the code
    without gradients."""

    weight_casts: WeightCasts | None = None

    def project(self, m: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        l1, l2 = self.linear_1, self.linear_2
        dt = autocast_dtype(m)
        dtype = dt if dt is not None else m.dtype

        def make() -> tuple[torch.Tensor, torch.Tensor]:
            return (stack_cast([l1.weight, l2.weight], dtype),
                    stack_cast([l1.bias, l2.bias], dtype))

        casts = self.weight_casts
        if casts is not None and casts.caching():
            w, b = casts.cached(("stacked_opm", id(self), dtype), make)
        else:
            w, b = make()
        a, b = _linear(m, w, b, casts).split(l1.out_features, dim=-1)  # each [*, S, N, c]
        mask = mask.unsqueeze(-1)  # [*, S, N, 1]
        return a * mask, b * mask


def swap_outer_product_projections(model: torch.nn.Module,
                                   weight_casts: WeightCasts | None = None
                                   ) -> torch.nn.Module:
    """Every `OuterProductMean` of `model` projects its input with one matmul
    (`StackedOuterProductProjections`), in place, sharing `weight_casts` if given; it
    composes with the other outer-product swaps. Returns `model`."""
    swap(model, OuterProductMean, StackedOuterProductProjections, weight_casts=weight_casts)
    return model


def swap_attention_projections(model: torch.nn.Module,
                               weight_casts: WeightCasts | None = None) -> torch.nn.Module:
    """Every `Attention` of `model` becomes a `StackedProjectionAttention`, in place,
    sharing `weight_casts` if given. Returns `model`."""
    swap(model, Attention, StackedProjectionAttention, weight_casts=weight_casts)
    return model


def swap_triangle_bias_projections(model: torch.nn.Module) -> torch.nn.Module:
    """Every `TriangleAttention` of `model` becomes a `StackedBiasTriangleAttention`, in
    place (after `swap_attention_projections`, whose stacked weights it extends).
    Returns `model`."""
    swap(model, TriangleAttention, StackedBiasTriangleAttention)
    return model
