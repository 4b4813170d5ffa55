"""Replacement `AttentionCore` modules: PyTorch SDPA and the Triton flash kernel.

Both are parameter-free, like the core they replace, so swapping them leaves the model's
parameters and state dict untouched.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from scalefold.kernels.attention import FlashConfig, flash_attention
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


def eager_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    biases: list[torch.Tensor], scale: float = 1.0) -> torch.Tensor:
    """The model's own math (reference for parity tests)."""
    return AttentionCore()(q, k, v, biases, scale)


class BroadcastAttentionCore(AttentionCore):
    """Attention with very few queries and keys (the template pointwise attention: one query
    per pair over 4 templates) as broadcast products and sums in float32.

    A [1 × c] · [c × 4] product per (pair, head) is no matrix product: cuBLAS's batched GEMMs
    run it at ~1/25 of the memory's rate (3.24 ms a call at 704 residues on the H200,
    against 0.13 ms to read k and v; perf-log 2026-12-04 section 16). Written as
    elementwise products and sums, `torch.compile` fuses the logits, softmax and weighted
    sum into passes over k and v. float32 throughout (the products of the bf16 matmul are
    exact and summed in float32 too); the output in v's dtype, as the matmul's.
    """

    def forward(self, q, k, v, biases, scale=1.0):
        # q: [*, H, Q, c]  k: [*, H, K, c]  v: [*, H, K, c_v]
        if scale != 1.0:
            q = q * scale  # rounded in q's dtype first, as the plain core does
        logits = (q.float().unsqueeze(-2) * k.float().unsqueeze(-3)).sum(-1)  # [*, H, Q, K]
        for b in biases:
            logits = logits + b
        weights = torch.softmax(logits, dim=-1)
        out = (weights.unsqueeze(-1) * v.float().unsqueeze(-3)).sum(-2)  # [*, H, Q, c_v]
        return out.to(v.dtype)
