"""Gated multi-head attention (AlphaFold2 supplement, Algorithms 7, 13, 14, 19).

`AttentionCore` is the single softmax-attention implementation of the network. It has no
parameters, so `scalefold.kernels` can swap every instance for a fused (Triton,
flash-attention style) kernel from outside the model.
"""

from __future__ import annotations

import torch
from torch import nn

from scalefold.model.primitives import Linear, SigmoidGate


class AttentionCore(nn.Module):
    """softmax((scale · q) kᵀ + Σ biases) v.

    q is scaled (and rounded to its dtype) before the product, as the reference scales
    its query projection; the scale is an argument so that a fused core can apply it
    where it loads q.
    """

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        biases: list[torch.Tensor],
        scale: float = 1.0,
    ) -> torch.Tensor:
        # q: [*, H, Q, c]  k: [*, H, K, c]  v: [*, H, K, c_v]
        # biases: each broadcastable to [*, H, Q, K]
        if scale != 1.0:
            q = q * scale
        logits = torch.matmul(q, k.transpose(-1, -2))
        for b in biases:
            logits = logits + b
        weights = torch.softmax(logits, dim=-1)
        return torch.matmul(weights, v)  # [*, H, Q, c_v]


class MaskBias(nn.Module):
    """The additive attention bias of a 0/1 mask: inf · (mask − 1), 0 where attended and
    −inf (in effect) where masked: [*, A, B] -> [*, A, B], or [*, B, A] with `transpose`.

    A parameter-free module of its own, so that the DAP layers (`scalefold.parallel`)
    build the bias as the plain modules do.
    """

    def __init__(self, inf: float) -> None:
        super().__init__()
        self.inf = inf

    def forward(self, mask: torch.Tensor, transpose: bool = False) -> torch.Tensor:
        if transpose:
            mask = mask.transpose(-1, -2)
        return self.inf * (mask - 1.0)


class Attention(nn.Module):
    """Multi-head attention with optional sigmoid gating (the reference's `mha`)."""

    def __init__(
        self,
        c_q: int,
        c_kv: int,
        c_hidden: int,
        num_heads: int,
        gating: bool = True,
        c_out: int | None = None,
    ) -> None:
        super().__init__()
        self.c_hidden = c_hidden
        self.num_heads = num_heads
        hc = c_hidden * num_heads
        self.linear_q = Linear(c_q, hc, bias=False, init="glorot")
        self.linear_k = Linear(c_kv, hc, bias=False, init="glorot")
        self.linear_v = Linear(c_kv, hc, bias=False, init="glorot")
        self.linear_o = Linear(hc, c_out or c_q, bias=True, init="final")
        self.linear_g = Linear(c_q, hc, bias=True, init="gating") if gating else None
        self.gate = SigmoidGate() if gating else None
        self.core = AttentionCore()

    def _heads(self, x: torch.Tensor, columns: bool) -> torch.Tensor:
        x = x.unflatten(-1, (self.num_heads, self.c_hidden))
        if columns:
            return x.movedim(-4, -2)  # [*, L, B, H, c] -> [*, B, H, L, c] (a view)
        return x.transpose(-2, -3)  # [*, L, H, c] -> [*, H, L, c]

    def projections(
        self, q_x: torch.Tensor, kv_x: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """q, k, v and the gate's logits (None without gating), each [*, L, H·c]."""
        g = self.linear_g(q_x) if self.linear_g is not None else None
        return self.linear_q(q_x), self.linear_k(kv_x), self.linear_v(kv_x), g

    def forward(
        self, q_x: torch.Tensor, kv_x: torch.Tensor, biases: list[torch.Tensor],
        columns: bool = False,
    ) -> torch.Tensor:
        """Attention along dim -2 of q_x [*, Q, c_q] / kv_x [*, K, c_kv].

        `columns=True`: q_x is [*, Q, B, c_q] and kv_x [*, K, B, c_kv], and attention runs
        along dim -3 for every B (MSA columns, the ending-node triangle), with biases
        broadcastable to [*, B, H, Q, K]. The same math as transposing the inputs and
        outputs, without copying the transposed activations for every projection.
        """
        q, k, v, g = self.projections(q_x, kv_x)
        return self.attend(q, k, v, g, biases, columns)

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor | None,
        biases: list[torch.Tensor], columns: bool = False,
        residual: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The attention of `forward` from its projections (each [*, L, H·c]; g the gate's
        logits or None), for modules that project their input together with other
        quantities (triangle attention's bias); `residual`: see `output`."""
        q, k, v = (self._heads(t, columns) for t in (q, k, v))
        # [*, H, Q, c] ([*, B, H, Q, c] for columns)
        o = self._merged(self.core(q, k, v, biases, scale=self.c_hidden**-0.5), columns)
        if g is not None:
            o = self.gate(o, g)  # o · sigmoid(g)
        return self.output(o, residual)

    def output(self, o: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """linear_o(o) [*, Q, c_out] (o: [*, Q, H·c]), plus `residual` if given: the
        module's residual update without dropout (`added_to`), one call so that a fused
        kernel can add it in the projection's epilogue (`scalefold.kernels.ln_linear`)."""
        out = self.linear_o(o)
        return out if residual is None else residual + out

    def _merged(self, o: torch.Tensor, columns: bool) -> torch.Tensor:
        """The core's output back in the projections' layout: [*, H, Q, c] -> [*, Q, H*c]
        ([*, B, H, Q, c] -> [*, Q, B, H*c] for columns); `_heads` undone."""
        return (o.movedim(-2, -4) if columns else o.transpose(-2, -3)).flatten(-2)


class GlobalAttention(nn.Module):
    """Global column attention of the extra-MSA stack (Algorithm 19).

    One query per column (the masked mean over sequences) attends to all sequences with
    a single shared key/value head; the gate stays per sequence.
    """

    def __init__(self, c_in: int, c_hidden: int, num_heads: int, inf: float, eps: float):
        super().__init__()
        self.c_hidden = c_hidden
        self.num_heads = num_heads
        self.eps = eps
        self.mask_bias = MaskBias(inf)
        self.linear_q = Linear(c_in, c_hidden * num_heads, bias=False, init="glorot")
        self.linear_k = Linear(c_in, c_hidden, bias=False, init="glorot")
        self.linear_v = Linear(c_in, c_hidden, bias=False, init="glorot")
        self.linear_g = Linear(c_in, c_hidden * num_heads, bias=True, init="gating")
        self.linear_o = Linear(c_hidden * num_heads, c_in, bias=True, init="final")

    def forward(self, m: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # m: [*, N_res, S, c_in]  mask: [*, N_res, S]
        q_avg = torch.sum(m * mask.unsqueeze(-1), dim=-2) / (
            torch.sum(mask, dim=-1, keepdim=True) + self.eps
        )  # [*, N_res, c_in]
        q = self.linear_q(q_avg).unflatten(-1, (self.num_heads, self.c_hidden))
        q = q * (self.c_hidden**-0.5)  # [*, N_res, H, c]
        k = self.linear_k(m)  # [*, N_res, S, c]
        v = self.linear_v(m)  # [*, N_res, S, c]
        bias = self.mask_bias(mask).unsqueeze(-2)  # [*, N_res, 1, S]
        a = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) + bias, dim=-1)  # [*, N_res, H, S]
        o = torch.matmul(a, v)  # [*, N_res, H, c]
        g = torch.sigmoid(self.linear_g(m)).unflatten(-1, (self.num_heads, self.c_hidden))
        o = (o.unsqueeze(-3) * g).flatten(-2)  # [*, N_res, S, H*c]
        return self.linear_o(o)
