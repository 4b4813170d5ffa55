"""MSA-track modules of the Evoformer (AlphaFold2 supplement, Algorithms 7, 8, 9, 19)."""

from __future__ import annotations

import torch
from torch import nn

from scalefold.model.attention import Attention, GlobalAttention, MaskBias
from scalefold.model.primitives import LayerNorm, Linear


class MSARowAttentionWithPairBias(nn.Module):
    def __init__(self, c_m: int, c_z: int, c_hidden: int, num_heads: int, inf: float):
        super().__init__()
        self.mask_bias = MaskBias(inf)
        self.layer_norm_m = LayerNorm(c_m)
        self.layer_norm_z = LayerNorm(c_z)
        self.linear_z = Linear(c_z, num_heads, bias=False, init="default")
        self.mha = Attention(c_m, c_m, c_hidden, num_heads, gating=True)

    def normalized_projections(self, m: torch.Tensor) -> tuple:
        """The attention's q, k, v and gate projections (each [*, S, N, H·c]) of the
        LayerNorm of m: where a fused kernel can take both (`scalefold.kernels.ln_linear`)."""
        m = self.layer_norm_m(m)
        return self.mha.projections(m, m)

    def normalized_pair_bias(self, z: torch.Tensor) -> torch.Tensor:
        """The pair bias [*, N, N, H]: linear_z of the LayerNorm of z."""
        return self.linear_z(self.layer_norm_z(z))

    def forward(self, m: torch.Tensor, z: torch.Tensor, mask: torch.Tensor,
                residual: torch.Tensor | None = None) -> torch.Tensor:
        # m: [*, S, N, c_m]  z: [*, N, N, c_z]  mask: [*, S, N]; residual: [*, S, N, c_m]
        proj = self.normalized_projections(m)
        mask_bias = self.mask_bias(mask)[..., :, None, None, :]  # [*, S, 1, 1, N]
        pair_bias = self.normalized_pair_bias(z)  # [*, N, N, H]
        pair_bias = pair_bias.permute(*range(pair_bias.dim() - 3), -1, -3, -2).unsqueeze(-4)
        # pair_bias: [*, 1, H, N, N]
        return self.mha.attend(*proj, [mask_bias, pair_bias], residual=residual)

    def added_to(self, r: torch.Tensor, m: torch.Tensor, z: torch.Tensor,
                 mask: torch.Tensor) -> torch.Tensor:
        """r + forward(m, z, mask): the residual update without dropout
        (`SharedDropout.update`), the add in the attention's output projection."""
        return self(m, z, mask, residual=r)


class MSAColumnAttention(nn.Module):
    def __init__(self, c_m: int, c_hidden: int, num_heads: int, inf: float):
        super().__init__()
        self.mask_bias = MaskBias(inf)
        self.layer_norm_m = LayerNorm(c_m)
        self.mha = Attention(c_m, c_m, c_hidden, num_heads, gating=True)

    def normalized_projections(self, m: torch.Tensor) -> tuple:
        """The attention's q, k, v and gate projections (each [*, S, N, H·c]) of the
        LayerNorm of m: where a fused kernel can take both (`scalefold.kernels.ln_linear`)."""
        m = self.layer_norm_m(m)
        return self.mha.projections(m, m)

    def forward(self, m: torch.Tensor, mask: torch.Tensor,
                residual: torch.Tensor | None = None) -> torch.Tensor:
        # m: [*, S, N, c_m]  mask: [*, S, N]; residual: [*, S, N, c_m]
        proj = self.normalized_projections(m)
        mask_bias = self.mask_bias(mask, transpose=True)[..., :, None, None, :]
        # mask_bias: [*, N, 1, 1, S]; attention along S for every column N
        return self.mha.attend(*proj, [mask_bias], columns=True, residual=residual)

    def added_to(self, r: torch.Tensor, m: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """r + forward(m, mask), the add in the attention's output projection."""
        return self(m, mask, residual=r)


class MSAColumnGlobalAttention(nn.Module):
    def __init__(self, c_m: int, c_hidden: int, num_heads: int, inf: float, eps: float):
        super().__init__()
        self.layer_norm_m = LayerNorm(c_m)
        self.global_attention = GlobalAttention(c_m, c_hidden, num_heads, inf=inf, eps=eps)

    def forward(self, m: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # m: [*, S, N, c_m]  mask: [*, S, N]
        m = self.layer_norm_m(m).transpose(-2, -3)  # [*, N, S, c_m]
        out = self.global_attention(m, mask.transpose(-1, -2))
        return out.transpose(-2, -3)


class Transition(nn.Module):
    """Two-layer MLP with a ×n hidden width (Algorithms 9 and 15).

    No mask is applied to the output, as in AlphaFold and the MLPerf reference.
    """

    def __init__(self, c: int, n: int):
        super().__init__()
        self.layer_norm = LayerNorm(c)
        self.linear_1 = Linear(c, n * c, init="relu")
        self.linear_2 = Linear(n * c, c, init="final")

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The hidden activations relu(linear_1(LayerNorm(x))) [*, n·c]."""
        return torch.relu(self.linear_1(self.layer_norm(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.hidden(x))

    def added_to(self, r: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """r + forward(x): the block's residual update (a seam: the update and the add
        as one kernel in `scalefold.kernels.fused_transition`)."""
        return r + self(x)
