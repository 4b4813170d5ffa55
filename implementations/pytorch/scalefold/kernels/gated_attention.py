"""The attention's sigmoid gate in the attention kernel's epilogue, without gradients.

Every gated `Attention` (MSA row and column, both triangle attentions) multiplies the
core's output by sigmoid(g) before its output projection: a gate kernel reads the
output and g and writes the gated output, one more pass over [*, Q, H·c] after the
attention kernel wrote it. On the H100's 224-residue evaluation chain the gate kernels
took 14.5 of 341 ms (docs/evidence/2026-12-05_h100_s3/callB_eval.txt), about two thirds
of them behind attentions. Here the Triton core loads g where it stores its output and
stores o · sigmoid(g), rounded once: the ungated output is never written. It differs
from the two-kernel path within the output's rounding (that path rounds o first).
With gradients, with another core, or where the kernel cannot take the call, the plain
`attend` runs.
"""

from __future__ import annotations

import torch

from scalefold.kernels.cores import TritonAttentionCore
from scalefold.kernels.swap import swap
from scalefold.model.attention import Attention


class GateEpilogueAttention:
    """`Attention` mixin: `attend` with the gate in the Triton core's epilogue where
    nothing records gradients."""

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               g: torch.Tensor | None, biases: list[torch.Tensor],
               columns: bool = False, residual: torch.Tensor | None = None) -> torch.Tensor:
        if g is None or torch.is_grad_enabled() or not isinstance(self.core,
                                                                  TritonAttentionCore):
            return super().attend(q, k, v, g, biases, columns, residual)
        qh, kh, vh, gh = (self._heads(t, columns) for t in (q, k, v, g))
        o = self.core.gated(qh, kh, vh, gh, biases, scale=self.c_hidden**-0.5)
        if o is None:
            return super().attend(q, k, v, g, biases, columns, residual)
        return self.output(self._merged(o, columns), residual)


def swap_gate_epilogue(model: torch.nn.Module) -> torch.nn.Module:
    """Every `Attention` of `model` gets `GateEpilogueAttention` in front of its class, in
    place. Returns `model`."""
    swap(model, Attention, GateEpilogueAttention)
    return model
