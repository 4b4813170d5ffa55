"""Triangle multiplication computed channels-first, applied from outside the model.

The plain module (`scalefold.model.pair.TriangleMultiplication`) projects z to a, b in the
pair layout [*, N, N, c] and moves the channels first for the batched matmul over k. Those
views have no unit stride in either matrix dim, so cuBLAS cannot take them: PyTorch copies
a and b (and their gradients) to contiguous [c, N, N] buffers, 13 copies of 16 MiB per
Evoformer block at crop 256 in the H200 profile, and the
gating and masking in between run on strided tensors.

Here the four projections that feed the matmul are one matmul that writes channels-first:
[*, 4c, N·N] = W_cat · zᵀ + b_cat, with W_cat the four `Linear` weights stacked (the same
Parameters: the stacking is part of the differentiated graph, so gradients reach each
`Linear` as before). Gating and masking then run on contiguous channel-first tensors, the
triangle matmul takes them without copies (a transposed operand is a cuBLAS flag, not a
copy), and only the product x is transposed back for the output LayerNorm (or, with
`norm_kernel`, read where it is by a LayerNorm kernel that writes channels-last). The output
gate (`linear_g`) and the output projection stay in the pair layout, as in the plain
module. Same math; the parity test compares outputs and every gradient.

With `bias_in_gating`, forwards without gradients (recycling iterations, evaluation) that
torch.compile traces run the stacked projection as a plain matmul and add its bias in the
gating, where the compiled glue fuses it: baddbmm first copies the broadcast bias into its
[4c, N·N] output and the GEMM reads it back (beta = 1), two passes over the largest tensor
of the module. The bias then joins the product after its rounding to the compute dtype
instead of before it (one more rounding, bf16 only). Run eagerly (the DAP configs' step,
`h100`'s evaluation) the four bias adds would be kernels of their own, about what they
save, so there baddbmm stays, as before the field (the eager form is not measured). With
gradients baddbmm stays: its bias gradient, fused by inductor into the gating backward,
measured faster than the same sum taken from the gating (docs/perf-log/2026-12-03.md).

With `gating_kernel`, forwards with gradients gate through `gated_projections`
(`scalefold.kernels.trimul_gating`): the same forward, and a backward that is one Triton
kernel writing the four projections' gradients and their sums for the stacked bias,
instead of the reduction kernel inductor fuses from the gating backward and baddbmm's
bias gradient. The baddbmm then takes the bias detached; its gradient comes from the
gating's backward.

With `forward_projection_kernel`, forwards without gradients compute the four projections
and their gating as one Triton kernel (`scalefold.kernels.trimul_projection`): the
stacked projection is never written out, nor the gating's pointwise kernel run (which
inductor, with the evaluation's dynamic shapes, made ~4x slower than its static form: 93
against 22 µs at 224 residues on an H100).

With `contiguous_grads`, the triangle product's backward is written out so that both
operands' gradients come out of cuBLAS contiguous. Autograd's matmul backward returns the
gradient of a transposed operand (b for outgoing edges, a for incoming) as a transposed
view, and the gating backward that reads it (one kernel under `compile_glue`, fused with
the stacked bias's sum over N·N) then walks it at a stride of N elements.
"""

from __future__ import annotations

import torch
from torch import nn

from scalefold.kernels._autocast import autocast_dtype
from scalefold.kernels._triton import triton_usable
from scalefold.kernels.layer_norm import TritonLayerNorm
from scalefold.kernels.layer_norm_cf import layer_norm_channels_first
from scalefold.kernels.projections import stack_cast
from scalefold.kernels.swap import swap
from scalefold.kernels.trimul_gating import gated_projections
from scalefold.kernels.trimul_projection import fits as projection_fits
from scalefold.kernels.trimul_projection import project_gate_forward
from scalefold.model.pair import TriangleMultiplication


class ChannelFirstTriangleMultiplication(TriangleMultiplication):
    """`TriangleMultiplication` with the same parameters, computed channels-first.

    `norm_kernel`: the output LayerNorm reads the channels-first product in place
    (`layer_norm_channels_first`) instead of a transposed copy, when `layer_norm_out` is
    the Triton LayerNorm (it takes that module's parameters, eps and output dtype).
    """

    norm_kernel: bool = False
    contiguous_grads: bool = False
    bias_in_gating: bool = False
    gating_kernel: bool = False
    forward_projection_kernel: bool = False

    def _stacked(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        # the four projections' weights [4c, c_z] and biases [4c], stacked, in `dtype`
        lins = (self.linear_a_p, self.linear_a_g, self.linear_b_p, self.linear_b_g)
        return (stack_cast([lin.weight for lin in lins], dtype),
                stack_cast([lin.bias for lin in lins], dtype))

    def _projections(self, z: torch.Tensor, detach_bias: bool = False
                     ) -> tuple[torch.Tensor, torch.Tensor, bool]:
        # z: [*, N, N, c_z] -> [*, 4c, N*N]: a_p, a_g, b_p, b_g stacked along channels; the
        # stacked bias [4c] (in the compute dtype) and whether the projections include it.
        # detach_bias: included, but its gradient left to the caller (`gated_projections`)
        lead = z.shape[:-3]
        zf = z.reshape(-1, z.shape[-3] * z.shape[-2], z.shape[-1])  # [B, N*N, c_z]
        dt = autocast_dtype(z)
        w, bias = self._stacked(dt if dt is not None else z.dtype)
        if dt is not None:
            zf = zf.to(dt)
        wb = w.expand(zf.shape[0], -1, -1)
        if self.bias_in_gating and not torch.is_grad_enabled() and torch.compiler.is_compiling():
            out = torch.bmm(wb, zf.transpose(-1, -2))  # W·zᵀ: [B, 4c, N*N]
            return out.reshape(*lead, *out.shape[-2:]), bias, False
        # W·zᵀ + bias: [B, 4c, N*N], contiguous channels-first
        c_in = bias.detach() if detach_bias else bias
        out = torch.baddbmm(c_in[:, None], wb, zf.transpose(-1, -2))
        return out.reshape(*lead, *out.shape[-2:]), bias, True

    def project(self, z: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # z: [*, N1, N2, c_z]  mask: [*, N1, N2] -> z normed, a, b: [*, c, N1, N2]
        z = self.layer_norm_in(z)
        c = self.linear_a_p.out_features
        if (self.forward_projection_kernel and not torch.is_grad_enabled()
                and triton_usable(z) and projection_fits(z.shape[-1])):
            dt = autocast_dtype(z) or z.dtype
            w, bias = self._stacked(dt)
            m = mask.flatten(-2).unsqueeze(-2)  # [*, 1, N1*N2]
            a, b = project_gate_forward(z.to(dt), w, bias, m, c)  # each [*, c, N1, N2]
            return z, a, b
        kernel = self.gating_kernel and torch.is_grad_enabled() and triton_usable(z)
        proj, bias, included = self._projections(z, detach_bias=kernel)  # [*, 4c, N1*N2]
        a, b = self.gated(proj, bias, included, mask, kernel)
        return z, a, b

    def gated(self, proj: torch.Tensor, bias: torch.Tensor, included: bool,
              mask: torch.Tensor, kernel: bool = False
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """a, b ([*, c, N1, N2]) from the stacked projections `proj` ([*, 4c, N1*N2],
        `bias` [4c] added where `included`) and the mask [*, N1, N2]. `kernel`: the
        gating's Triton kernel with its backward (`gating_kernel`)."""
        n1, n2 = mask.shape[-2:]
        c = proj.shape[-2] // 4
        m = mask.flatten(-2).unsqueeze(-2).to(proj.dtype)  # [*, 1, N1*N2]
        if kernel:  # the bias's gradient comes from the gating backward's kernel
            a, b = gated_projections(proj, bias, m, c)  # each [*, c, N1*N2]
            return a.unflatten(-1, (n1, n2)), b.unflatten(-1, (n1, n2))
        a_p, a_g, b_p, b_g = proj.split(c, dim=-2)  # each [*, c, N1*N2]
        if not included:  # one pointwise kernel with the gating below when compiled
            ba_p, ba_g, bb_p, bb_g = bias[:, None].split(c)  # each [c, 1]
            a_p, a_g, b_p, b_g = a_p + ba_p, a_g + ba_g, b_p + bb_p, b_g + bb_g
        a = (torch.sigmoid(a_g) * m * a_p).unflatten(-1, (n1, n2))  # [*, c, N1, N2]
        b = (torch.sigmoid(b_g) * m * b_p).unflatten(-1, (n1, n2))  # [*, c, N1, N2]
        return a, b  # contiguous operands: no copies for the matmul

    def triangle_product(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if not self.contiguous_grads:
            return super().triangle_product(a, b)
        return _TriangleProduct.apply(a, b, self.outgoing)

    def projected_product(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ln = self.layer_norm_out
        if not (self.norm_kernel and isinstance(ln, TritonLayerNorm)):
            return super().projected_product(a, b)
        x = self.triangle_product(a, b)  # [*, c, N, N], contiguous
        n1, n2 = x.shape[-2:]
        x = layer_norm_channels_first(x.flatten(-2), ln.weight, ln.bias, ln.eps, ln.output)
        return self.linear_z(x.unflatten(-2, (n1, n2)))  # [*, N, N, c_z]


class _TriangleProduct(torch.autograd.Function):
    """x = a·bᵀ (outgoing) or aᵀ·b (incoming) per channel, a, b: [*, c, N, N]; each
    gradient computed as the product whose result is already in its operand's layout
    (a transposed factor is a cuBLAS flag), so neither comes back as a transposed view."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, outgoing: bool) -> torch.Tensor:
        ctx.save_for_backward(a, b)
        ctx.outgoing = outgoing
        if outgoing:
            return torch.matmul(a, b.transpose(-1, -2))  # x_ij = Σ_k a_ik b_jk
        return torch.matmul(a.transpose(-1, -2), b)  # x_ij = Σ_k a_ki b_kj

    @staticmethod
    def backward(ctx, dx: torch.Tensor):
        # dx: [*, c, N, N]
        a, b = ctx.saved_tensors
        da = db = None
        if ctx.outgoing:
            if ctx.needs_input_grad[0]:
                da = torch.matmul(dx, b)  # da_ik = Σ_j dx_ij b_jk
            if ctx.needs_input_grad[1]:
                db = torch.matmul(dx.transpose(-1, -2), a)  # db_jk = Σ_i dx_ij a_ik
        else:
            if ctx.needs_input_grad[0]:
                da = torch.matmul(b, dx.transpose(-1, -2))  # da_ki = Σ_j b_kj dx_ij
            if ctx.needs_input_grad[1]:
                db = torch.matmul(a, dx)  # db_kj = Σ_i a_ki dx_ij
        return da, db, None


def swap_triangle_multiplication(model: nn.Module, norm_kernel: bool = False,
                                 contiguous_grads: bool = False,
                                 bias_in_gating: bool = False,
                                 gating_kernel: bool = False,
                                 forward_projection_kernel: bool = False) -> nn.Module:
    """Every `TriangleMultiplication` of `model` computes channels-first, in place (the
    same submodules and Parameters: state dict and optimizer state carry over).
    `norm_kernel`, `contiguous_grads`, `bias_in_gating`, `gating_kernel`,
    `forward_projection_kernel`: see
    `ChannelFirstTriangleMultiplication`."""
    swap(model, TriangleMultiplication, ChannelFirstTriangleMultiplication,
         norm_kernel=norm_kernel, contiguous_grads=contiguous_grads,
         bias_in_gating=bias_in_gating, gating_kernel=gating_kernel,
         forward_projection_kernel=forward_projection_kernel)
    return model
