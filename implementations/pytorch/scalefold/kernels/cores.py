"""Replacement `AttentionCore` modules: PyTorch SDPA and the Triton flash kernel.

Both are parameter-free, like the core they replace, so swapping them leaves the model's
parameters and state dict untouched.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from scalefold.kernels.attention import FlashConfig, flash_attention, gated_flash_attention
from scalefold.model.attention import AttentionCore


class SDPAAttentionCore(AttentionCore):
    """`F.scaled_dot_product_attention` with the biases summed into `attn_mask`.

    SDPA's CUDA kernels take 4-D inputs, so the leading dims are folded into one batch
    dim; the summed bias is materialised at [*, H, Q, K] (what eager attention does for
    its logits anyway), which rules out the flash backend but not the memory-efficient
    one. q is scaled beforehand, hence scale=1. cuDNN's backend is left out: on torch 2.11 /
    H200 it failed to execute these masked shapes (mha_graph.execute not good).
    """

    backends = (SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH)

    def forward(self, q, k, v, biases, scale=1.0):
        # q: [*, H, Q, c]  k: [*, H, K, c]  v: [*, H, K, c_v]
        if scale != 1.0:
            q = q * scale  # rounded in q's dtype first, as the plain core does
        *lead, h, ql, c = q.shape
        kl = k.shape[-2]
        mask = None
        if biases:
            mask = biases[0]
            for b in biases[1:]:
                mask = mask + b
            mask = mask.to(q.dtype).expand(*lead, h, ql, kl).reshape(-1, h, ql, kl)
        with sdpa_kernel(list(self.backends)):
            o = F.scaled_dot_product_attention(
                q.reshape(-1, h, ql, c), k.reshape(-1, h, kl, c),
                v.reshape(-1, h, kl, v.shape[-1]), attn_mask=mask, scale=1.0,
            )  # [Z, H, Q, c_v]
        return o.reshape(*lead, h, ql, v.shape[-1])


class TritonAttentionCore(AttentionCore):
    """Flash-attention-style Triton kernels (forward and backward) with additive biases.

    `config`: the kernels' launches and variants (`FlashConfig`; None: the default)."""

    def __init__(self, config: FlashConfig | None = None) -> None:
        super().__init__()
        self.config = config

    def forward(self, q, k, v, biases, scale=1.0):
        return flash_attention(q, k, v, list(biases), self.config, scale=scale)

    def gated(self, q, k, v, g, biases, scale=1.0):
        """Without gradients: forward(...) · sigmoid(g) (g: [*, H, Q, c_v]) as one
        kernel, or None where the kernel cannot take it (the caller gates)."""
        return gated_flash_attention(q, k, v, list(biases), g, self.config, scale=scale)


def eager_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    biases: list[torch.Tensor], scale: float = 1.0) -> torch.Tensor:
    """The model's own math (reference for parity tests)."""
    return AttentionCore()(q, k, v, biases, scale)
