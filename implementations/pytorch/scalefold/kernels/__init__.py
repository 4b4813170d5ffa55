"""Speed-ups applied to a built `AlphaFold` from outside, like torchtitan's `parallelize_*`.

The model code stays plain; these functions swap or wrap its leaf modules in place:

- `apply_kernels(model, attention=..., layer_norm=..., layer_norm_output=...)`: every
  `AttentionCore` becomes the PyTorch-eager, SDPA or Triton flash implementation; every
  `LayerNorm` the eager or Triton one (same Parameter objects, same state-dict names),
  returning float32 under autocast (`"fp32"`, PyTorch's behaviour) or the autocast dtype
  (`"compute"`: bf16 residual streams).
- `keep_fp32(model)`: the structure module and auxiliary heads run in float32 under a bf16
  autocast region (what the public ScaleFold entry keeps in fp32).
- `compile_glue(model)`: `torch.compile` on the blocks whose cost is elementwise glue
  around matmuls (transitions, outer product mean, triangle multiplication).
- `recompute_outer_product_mean(model)`: the outer product mean's activations are
  recomputed in backward instead of saved (the largest saved tensor per block).
- `swap_gates(model)`: every sigmoid gate (x · sigmoid(g)) as one fused Triton kernel
  each way.
- `swap_linears(model)`: biased `Linear`s compute their bias gradient as a matrix-vector
  product instead of PyTorch's column-sum reduction.
- `swap_triangle_multiplication(model)`: triangle multiplication computed channels-first
  (one stacked projection, no layout copies around its batched matmul).

Apply them before the optimizer is built (LayerNorm swaps keep the Parameter objects, so
building it after is a habit, not a requirement).
"""

from __future__ import annotations

from typing import Literal

from torch import nn

from scalefold.kernels._triton import HAS_TRITON
from scalefold.kernels.attention import FlashConfig
from scalefold.kernels.cores import SDPAAttentionCore, TritonAttentionCore
from scalefold.kernels.gate import TritonSigmoidGate, swap_gates
from scalefold.kernels.glue import compile_glue, keep_fp32, recompute_outer_product_mean
from scalefold.kernels.layer_norm import ComputeDtypeLayerNorm, LayerNormOutput, TritonLayerNorm
from scalefold.kernels.linear import MatvecBiasGradLinear, swap_linears
from scalefold.kernels.opm import ProjectedOuterProductMean, swap_outer_product_mean
from scalefold.kernels.trimul import (
    ChannelFirstTriangleMultiplication,
    swap_triangle_multiplication,
)
from scalefold.model.attention import AttentionCore
from scalefold.model.primitives import LayerNorm

AttentionImpl = Literal["eager", "sdpa", "triton"]
LayerNormImpl = Literal["eager", "triton"]

_CORES: dict[str, type[AttentionCore]] = {
    "eager": AttentionCore,
    "sdpa": SDPAAttentionCore,
    "triton": TritonAttentionCore,
}
_NORMS: dict[tuple[str, str], type[LayerNorm]] = {
    ("eager", "fp32"): LayerNorm,
    ("eager", "compute"): ComputeDtypeLayerNorm,
    ("triton", "fp32"): TritonLayerNorm,
    ("triton", "compute"): TritonLayerNorm,
}


def _swap_layer_norm(old: LayerNorm, cls: type[LayerNorm], output: str) -> LayerNorm:
    new = cls.__new__(cls)
    nn.Module.__init__(new)
    new.c, new.eps = old.c, old.eps
    if cls is TritonLayerNorm:
        new.output = output
    # The same Parameter objects: optimizer state and state-dict names carry over.
    new.weight, new.bias = old.weight, old.bias
    new.train(old.training)
    return new


def apply_kernels(
    model: nn.Module,
    attention: AttentionImpl = "triton",
    layer_norm: LayerNormImpl = "triton",
    layer_norm_output: LayerNormOutput = "fp32",
    flash_config: FlashConfig | None = None,
) -> nn.Module:
    """Swap every attention core and LayerNorm of `model` in place; returns `model`.
    `flash_config` fixes the Triton attention's launches and variants (None: the
    default)."""
    if attention not in _CORES:
        raise ValueError(f"attention must be one of {sorted(_CORES)}, got {attention!r}")
    if layer_norm not in ("eager", "triton"):
        raise ValueError(f"layer_norm must be 'eager' or 'triton', got {layer_norm!r}")
    if layer_norm_output not in ("fp32", "compute"):
        raise ValueError(f"layer_norm_output must be 'fp32' or 'compute', "
                         f"got {layer_norm_output!r}")
    core_cls = _CORES[attention]
    norm_cls = _NORMS[(layer_norm, layer_norm_output)]
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, AttentionCore) and (
                    type(child) is not core_cls
                    or getattr(child, "config", None) is not flash_config):
                setattr(parent, name, TritonAttentionCore(flash_config)
                        if core_cls is TritonAttentionCore else core_cls())
            elif isinstance(child, LayerNorm) and (
                type(child) is not norm_cls
                or getattr(child, "output", "fp32") != layer_norm_output
            ):
                setattr(parent, name, _swap_layer_norm(child, norm_cls, layer_norm_output))
    return model


__all__ = [
    "FlashConfig",
    "HAS_TRITON",
    "ChannelFirstTriangleMultiplication",
    "ComputeDtypeLayerNorm",
    "MatvecBiasGradLinear",
    "ProjectedOuterProductMean",
    "SDPAAttentionCore",
    "TritonAttentionCore",
    "TritonLayerNorm",
    "TritonSigmoidGate",
    "apply_kernels",
    "compile_glue",
    "keep_fp32",
    "recompute_outer_product_mean",
    "swap_gates",
    "swap_linears",
    "swap_outer_product_mean",
    "swap_triangle_multiplication",
]
