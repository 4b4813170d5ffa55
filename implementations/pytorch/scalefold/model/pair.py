"""Pair-track modules (AlphaFold2 supplement, Algorithms 10–14)."""

from __future__ import annotations

import torch
from torch import nn

from scalefold.model.attention import Attention, MaskBias
from scalefold.model.primitives import LayerNorm, Linear, SigmoidGate


class OuterProductMean(nn.Module):
    """MSA → pair communication (Algorithm 10)."""

    def __init__(self, c_m: int, c_z: int, c_hidden: int, eps: float):
        super().__init__()
        self.eps = eps
        self.layer_norm = LayerNorm(c_m)
        self.linear_1 = Linear(c_m, c_hidden)
        self.linear_2 = Linear(c_m, c_hidden)
        self.linear_out = Linear(c_hidden * c_hidden, c_z, init="final")

    def forward(self, m: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # m: [*, S, N, c_m]  mask: [*, S, N]
        a, b = self.normalized_project(m, mask)  # each [*, S, N, c]
        outer = self.outer_projection(a, b)  # [*, N, N, c_z]
        return outer / self.mean_denominator(mask)

    def mean_denominator(self, mask: torch.Tensor) -> torch.Tensor:
        """eps + the count of sequences where both residues are present: [*, N, N, 1]
        from mask [*, S, N] (a fused implementation divides by it in its kernel,
        `scalefold.kernels.opm`)."""
        mask = mask.unsqueeze(-1)  # [*, S, N, 1]
        return self.eps + torch.einsum("...sik,...sjk->...ijk", mask, mask)

    def added_to(self, r: torch.Tensor, m: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """r + forward(m, mask): the pair stream's update, one call so that a fused
        implementation can add r where the update is made (`scalefold.kernels.ln_linear`)."""
        return r + self(m, mask)

    def normalized_project(self, m: torch.Tensor, mask: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """`project` of the LayerNorm of m: where a fused kernel can take both
        (`scalefold.kernels.ln_linear`)."""
        return self.project(self.layer_norm(m), mask)

    def project(self, m: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """The masked projections a, b [*, S, N, c] of the normalised m [*, S, N, c_m]."""
        mask = mask.unsqueeze(-1)  # [*, S, N, 1]
        return self.linear_1(m) * mask, self.linear_2(m) * mask

    def outer_projection(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """linear_out of Σ_s a_si ⊗ b_sj. a: [*, S, Ni, c], b: [*, S, Nj, c] ->
        [*, Ni, Nj, c_z] (Ni < Nj under DAP, where a is this rank's block of columns)."""
        outer = torch.einsum("...sic,...sje->...ijce", a, b).flatten(-2)  # [*, Ni, Nj, c*c]
        return self.linear_out(outer)


class TriangleMultiplication(nn.Module):
    """Triangle update using outgoing (Algorithm 11) or incoming (12) edges."""

    def __init__(self, c_z: int, c_hidden: int, outgoing: bool):
        super().__init__()
        self.outgoing = outgoing
        self.linear_a_p = Linear(c_z, c_hidden)
        self.linear_a_g = Linear(c_z, c_hidden, init="gating")
        self.linear_b_p = Linear(c_z, c_hidden)
        self.linear_b_g = Linear(c_z, c_hidden, init="gating")
        self.linear_g = Linear(c_z, c_z, init="gating")
        self.linear_z = Linear(c_hidden, c_z, init="final")
        self.layer_norm_in = LayerNorm(c_z)
        self.layer_norm_out = LayerNorm(c_hidden)
        self.gate = SigmoidGate()

    def forward(self, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # z: [*, N, N, c_z]  mask: [*, N, N]
        z, a, b = self.project(z, mask)
        return self.combine(a, b, z)

    def added_to(self, r: torch.Tensor, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """r + forward(z, mask): the residual update without dropout
        (`SharedDropout.update`)."""
        return r + self(z, mask)

    def project(self, z: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """layer_norm_in(z) and the gated, masked projections a, b, channels first
        ([*, c, N1, N2] for z: [*, N1, N2, c_z]): the two halves of the update around the
        triangle product, which DAP splits with a gather of one operand."""
        z = self.layer_norm_in(z)
        mask = mask.unsqueeze(-1)
        a = torch.sigmoid(self.linear_a_g(z)) * mask * self.linear_a_p(z)  # [*, N, N, c]
        b = torch.sigmoid(self.linear_b_g(z)) * mask * self.linear_b_p(z)  # [*, N, N, c]
        # Channels first so the contraction over k is one batched matmul.
        return z, a.movedim(-1, -3), b.movedim(-1, -3)

    def combine(self, a: torch.Tensor, b: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The triangle product of a, b ([*, c, N, N], channels first), normalised,
        projected and gated by z ([*, N, N, c_z], after layer_norm_in)."""
        return self.gate(self.projected_product(a, b), self.gate_logits(z))  # x · sigmoid(g)

    def gate_logits(self, z: torch.Tensor) -> torch.Tensor:
        """The output gate's logits linear_g(z) [*, N, N, c_z] (z after layer_norm_in)."""
        return self.linear_g(z)

    def projected_product(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """linear_z(layer_norm_out(the triangle product of a and b)): [*, N, N, c_z]."""
        x = self.triangle_product(a, b).movedim(-3, -1)  # [*, N, N, c]
        return self.linear_z(self.layer_norm_out(x))

    def triangle_product(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # a, b: [*, c, N, N] -> [*, c, N, N] (under DAP one operand is a block of rows or
        # columns: outgoing a [*, c, N/P, N] -> x [*, c, N/P, N]; incoming b [*, c, N,
        # N/P] -> x [*, c, N, N/P])
        if self.outgoing:
            return torch.matmul(a, b.transpose(-1, -2))  # x_ij = Σ_k a_ik b_jk
        return torch.matmul(a.transpose(-1, -2), b)  # x_ij = Σ_k a_ki b_kj


class TriangleAttention(nn.Module):
    """Triangle self-attention around the starting (Algorithm 13) or ending (14) node."""

    def __init__(self, c_z: int, c_hidden: int, num_heads: int, inf: float, starting: bool):
        super().__init__()
        self.starting = starting
        self.mask_bias = MaskBias(inf)
        self.layer_norm = LayerNorm(c_z)
        self.linear = Linear(c_z, num_heads, bias=False, init="default")
        self.mha = Attention(c_z, c_z, c_hidden, num_heads, gating=True)

    def project(self, z: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        """The triangle bias [*, I, J, H] and the attention's q, k, v and gate projections
        (each [*, I, J, H·c]) of z (after the LayerNorm): all linear in the same input."""
        return self.linear(z), self.mha.projections(z, z)

    def normalized_projections(self, z: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        """`project` of the LayerNorm of z: where a fused kernel can take both
        (`scalefold.kernels.ln_linear`)."""
        return self.project(self.layer_norm(z))

    def biases(self, mask_bias: torch.Tensor, tri_bias: torch.Tensor) -> list[torch.Tensor]:
        """The attention's additive biases: each row's key mask [*, R, 1, 1, K] and the
        triangle bias [*, 1, H, Q, K] (a seam: `scalefold.kernels.key_mask` folds them)."""
        return [mask_bias, tri_bias]

    def forward(self, z: torch.Tensor, mask: torch.Tensor,
                residual: torch.Tensor | None = None) -> torch.Tensor:
        # z: [*, N, N, c_z]  mask: [*, N, N]; residual: [*, N, N, c_z]
        tri_bias, proj = self.normalized_projections(z)  # tri_bias: [*, I, J, H]
        lead = range(tri_bias.dim() - 3)
        if self.starting:
            # z_ij attends to z_ik with bias b_jk: rows i, queries j, keys k
            mask_bias = self.mask_bias(mask)[..., :, None, None, :]  # [*, I, 1, 1, J]
            tri_bias = tri_bias.permute(*lead, -1, -3, -2).unsqueeze(-4)  # [*, 1, H, J, K]
            return self.mha.attend(*proj, self.biases(mask_bias, tri_bias), residual=residual)
        # Ending node: z_ij attends to z_kj with bias b_ki; columns j, queries i, keys k
        # (the starting-node math on the transposed pair, without transposing z).
        mask_bias = self.mask_bias(mask, transpose=True)[..., :, None, None, :]
        # mask_bias: [*, J, 1, 1, K]
        tri_bias = tri_bias.permute(*lead, -1, -2, -3).unsqueeze(-4)  # [*, 1, H, I, K]
        return self.mha.attend(*proj, self.biases(mask_bias, tri_bias), columns=True,
                               residual=residual)

    def added_to(self, r: torch.Tensor, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """r + forward(z, mask): the residual update without dropout
        (`SharedDropout.update`), the add in the attention's output projection."""
        return self(z, mask, residual=r)
