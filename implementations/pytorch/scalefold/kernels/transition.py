"""The transitions' ReLU in the first matmul's epilogue, applied from outside the model.

In a forward without gradients (the recycling iterations, evaluation) the compiled glue
runs a `Transition`'s first projection as a cuBLAS matmul with the bias in its epilogue,
then the ReLU as a kernel of its own that reads and writes the [*, n·c] hidden
activations once more, the widest tensor of the module: 20.6 ms of the 341 ms of kernels
of a 224-residue evaluation chain, 6% (`triton_poi_fused_relu_view`, 418 launches; the
H100 profile of docs/evidence/2026-12-05_h100_s3/callB_eval.txt). `torch._addmm_activation`
asks cuBLASLt for the bias and the ReLU in one epilogue; inductor keeps that operator as
an external kernel (a fallback), so compiled code keeps the epilogue too. The ReLU
commutes with the rounding to the compute dtype (it keeps signs and zeros), so the output
is the plain module's wherever cuBLAS picks the same matmul kernel for both.

With gradients the plain forward runs: the operator has no derivative, and the training
forward's saved activations and backward stay as measured.
"""

from __future__ import annotations

import torch

from scalefold.kernels._autocast import WeightCasts, autocast_dtype
from scalefold.kernels.swap import swap
from scalefold.model.msa import Transition


class EpilogueReluTransition(Transition):
    """`Transition` whose first projection and ReLU are one cuBLASLt call without
    gradients. `weight_casts`: the forward's shared weight casts, if any."""

    weight_casts: WeightCasts | None = None

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return super().hidden(x)
        h = self.layer_norm(x)  # [*, c]
        w, b = self.linear_1.weight, self.linear_1.bias  # [n·c, c], [n·c]
        dt = autocast_dtype(h)
        if dt is not None:  # autocast does not cover this operator: cast as it would
            casts = self.weight_casts
            w = casts.cast(w, dt) if casts is not None else w.to(dt)
            b = casts.cast(b, dt) if casts is not None else b.to(dt)
            h = h.to(dt)
        y = torch._addmm_activation(b, h.reshape(-1, h.shape[-1]), w.t())  # [M, n·c]
        return y.view(*h.shape[:-1], y.shape[-1])  # [*, n·c]


def swap_transitions(model: torch.nn.Module,
                     weight_casts: WeightCasts | None = None) -> torch.nn.Module:
    """Every `Transition` of `model` becomes an `EpilogueReluTransition`, in place,
    sharing `weight_casts` if given. Returns `model`."""
    swap(model, Transition, EpilogueReluTransition, weight_casts=weight_casts)
    return model
