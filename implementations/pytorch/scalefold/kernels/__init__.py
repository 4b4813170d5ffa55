"""Speed-ups applied to a built `AlphaFold` from outside, like torchtitan's `parallelize_*`.

The model code stays plain. Every speed-up is applied the same way: `swap` switches the
class of the matching modules to a subclass (or mixin) defined here, keeping their
Parameters and state-dict names (`scalefold.kernels.swap`). `apply_speedups` applies a
`SpeedConfig` in the one order that works; the functions it calls are public for tests
and for use on their own:

- `apply_kernels(model, attention=..., layer_norm=..., layer_norm_output=...)`: every
  `AttentionCore` becomes the PyTorch-eager, SDPA or Triton flash implementation; every
  `LayerNorm` the eager or Triton one, returning float32 under autocast (`"fp32"`,
  PyTorch's behaviour) or the autocast dtype (`"compute"`: bf16 residual streams);
  `layer_norm_launch` sets the Triton kernels' launch (the streaming backward).
- `keep_fp32(model)`: the structure module and auxiliary heads run in float32 under a bf16
  autocast region.
- `swap_outer_product_mean(model)`: the outer product mean's projection without layout
  copies; `recompute_outer_product_mean(model)`: its activations recomputed in backward;
  `swap_outer_product_epilogue(model)`: without gradients, its division and residual add
  in the projection's epilogue.
- `swap_triangle_multiplication(model)`: triangle multiplication computed channels-first.
- `swap_attention_projections(model)`: self-attention's q, k, v and gate projections
  as one matmul.
- `swap_linears(model)`: biased `Linear`s compute their bias gradient as a matvec.
- `swap_transitions(model)`: without gradients, each transition's ReLU in its first
  matmul's cuBLASLt epilogue.
- `swap_norm_projections(model)`: without gradients, each LayerNorm and the projections it
  feeds (transitions, MSA and triangle attentions) as one Triton kernel.
- `swap_gates(model)`: every sigmoid gate as one fused Triton kernel each way.
- `swap_gate_epilogue(model)`: without gradients, each gated attention's gate in the
  Triton attention kernel's epilogue.
- `swap_residual_dropout(model)`: each residual update r + dropout(x) as one Triton
  kernel each way, with eager PyTorch's roundings (bit-identical).
- `compile_glue(model)`: `torch.compile` of the blocks whose cost is elementwise glue
  around matmuls (transitions, outer product mean, triangle multiplication);
  `compile_structure_module(model)` of the launch-bound structure module; last.

A new speed-up is its module subclass here, one `SpeedConfig` field (which makes its
`scalefold train` flag and bench override), one line in `apply_speedups`, and its tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

from scalefold.kernels._autocast import WeightCasts
from scalefold.kernels._triton import HAS_TRITON
from scalefold.kernels.attention import FlashConfig
from scalefold.kernels.cores import SDPAAttentionCore, TritonAttentionCore
from scalefold.kernels.dropout import FusedResidualDropout, swap_residual_dropout
from scalefold.kernels.fused_transition import FusedTransition, swap_fused_transitions
from scalefold.kernels.gate import TritonSigmoidGate, swap_gates
from scalefold.kernels.gated_attention import GateEpilogueAttention, swap_gate_epilogue
from scalefold.kernels.glue import (
    compile_glue,
    compile_structure_module,
    keep_fp32,
    recompute_outer_product_mean,
)
from scalefold.kernels.key_mask import FoldedKeyMaskTriangleAttention, swap_folded_key_masks
from scalefold.kernels.layer_norm import (
    STREAM_LAUNCH,
    ComputeDtypeLayerNorm,
    LayerNormLaunch,
    LayerNormOutput,
    TritonLayerNorm,
)
from scalefold.kernels.linear import MatvecBiasGradLinear, swap_linears
from scalefold.kernels.ln_linear import swap_norm_projections
from scalefold.kernels.mask_bias import SharedMaskBias, share_mask_biases
from scalefold.kernels.opm import (
    EpilogueOuterProductMean,
    ProjectedOuterProductMean,
    swap_outer_product_epilogue,
    swap_outer_product_mean,
)
from scalefold.kernels.projections import StackedProjectionAttention, swap_attention_projections
from scalefold.kernels.swap import swap
from scalefold.kernels.transition import EpilogueReluTransition, swap_transitions
from scalefold.kernels.trimul import (
    ChannelFirstTriangleMultiplication,
    swap_triangle_multiplication,
)
from scalefold.model.attention import AttentionCore
from scalefold.model.primitives import LayerNorm

if TYPE_CHECKING:
    from scalefold.train.config import SpeedConfig

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


def apply_kernels(
    model: nn.Module,
    attention: AttentionImpl = "triton",
    layer_norm: LayerNormImpl = "triton",
    layer_norm_output: LayerNormOutput = "fp32",
    flash_config: FlashConfig | None = None,
    layer_norm_launch: LayerNormLaunch | None = None,
) -> nn.Module:
    """Swap every attention core and LayerNorm of `model` in place (any implementation
    of them for another); returns `model`. `flash_config` fixes the Triton attention's
    launches and variants, `layer_norm_launch` the Triton LayerNorm's (None: the
    defaults)."""
    if attention not in _CORES:
        raise ValueError(f"attention must be one of {sorted(_CORES)}, got {attention!r}")
    if layer_norm not in ("eager", "triton"):
        raise ValueError(f"layer_norm must be 'eager' or 'triton', got {layer_norm!r}")
    if layer_norm_output not in ("fp32", "compute"):
        raise ValueError(f"layer_norm_output must be 'fp32' or 'compute', "
                         f"got {layer_norm_output!r}")
    core_cls = _CORES[attention]
    core_attrs = {"config": flash_config} if core_cls is TritonAttentionCore else {}
    swap(model, AttentionCore, core_cls, alternatives=tuple(_CORES.values()), **core_attrs)
    norm_cls = _NORMS[(layer_norm, layer_norm_output)]
    norm_attrs = {}
    if norm_cls is TritonLayerNorm:
        norm_attrs["output"] = layer_norm_output
        if layer_norm_launch is not None:
            norm_attrs["launch"] = layer_norm_launch
    swap(model, LayerNorm, norm_cls, alternatives=tuple(set(_NORMS.values())), **norm_attrs)
    return model


def apply_speedups(model: nn.Module, speed: SpeedConfig, precision: str,
                   weight_casts: WeightCasts | None = None) -> nn.Module:
    """Every model-side speed-up of `speed`, in place, in the order they compose.

    The step-side ones (`fused_optimizer`, `single_pass_update`, `cuda_graphs`,
    `grad_sync`, `blas`) belong to the step (`scalefold.train.build.build_step`).
    `weight_casts`: the forward's cache that the swapped modules share (its scope is the
    step's autocast region): weight casts under `cached_weight_casts`, the bias
    gradients' ones.
    """
    casts_used = speed.matvec_bias_grad or speed.attention_stacked_projections
    if speed.cached_weight_casts and casts_used and weight_casts is None:
        raise ValueError("cached_weight_casts needs the WeightCasts whose scope the forward "
                         "opens (build_step passes it)")
    flash = FlashConfig(dq_kernel=speed.attention_dq_kernel, store_ds=speed.attention_store_ds,
                        fused_logits=speed.attention_fused_logits,
                        precomputed_delta=speed.attention_precomputed_delta,
                        unmasked_loads=speed.attention_unmasked_loads,
                        ds_dq_kernel=speed.attention_ds_dq_kernel,
                        bias_mma=speed.attention_bias_mma,
                        bias_tma=speed.attention_bias_tma,
                        pipelined_bias_loads=speed.attention_pipelined_bias_loads,
                        bwd_pipelined_loads=speed.attention_bwd_pipelined_loads,
                        fwd_half_key_block=speed.attention_half_key_blocks)
    apply_kernels(model, attention=speed.attention, layer_norm=speed.layer_norm,
                  layer_norm_output=speed.layer_norm_output,
                  flash_config=flash if flash != FlashConfig() else None,
                  layer_norm_launch=STREAM_LAUNCH if speed.layer_norm_bwd_stream else None)
    if precision == "bf16":
        keep_fp32(model)
    # The projection kernel replaces the class the recompute mixin then wraps.
    if speed.opm_projection_kernel:
        swap_outer_product_mean(model)
    if speed.recompute_outer_product:
        recompute_outer_product_mean(model)
    casts = weight_casts if speed.cached_weight_casts else None
    if speed.trimul_channel_first:
        swap_triangle_multiplication(model, norm_kernel=speed.trimul_norm_kernel,
                                     contiguous_grads=speed.trimul_contiguous_grads,
                                     bias_in_gating=speed.trimul_bias_in_gating,
                                     gating_kernel=speed.trimul_gating_kernel,
                                     forward_projection_kernel=(
                                         speed.trimul_projection_forward_kernel))
    if speed.attention_stacked_projections:
        swap_attention_projections(model, casts)
    if speed.matvec_bias_grad:
        swap_linears(model, casts)
    if speed.transition_relu_epilogue:
        swap_transitions(model, casts)
    if speed.ln_projection_forward_kernel:  # after the stacked projections it reads
        swap_norm_projections(model, casts)
    if speed.attention_gate_epilogue:
        swap_gate_epilogue(model)
    if speed.triangle_attention_folded_mask:
        swap_folded_key_masks(model, casts,
                              torch.float32 if speed.triangle_attention_fp32_bias else None)
    if speed.transition_forward_kernel:
        swap_fused_transitions(model, casts)
    if speed.opm_residual_epilogue:  # in front of the norm-projection mixin
        swap_outer_product_epilogue(model, casts)
    if casts is not None:  # bit-identical: the masks' biases once per forward
        share_mask_biases(model, casts)
    if speed.fused_gate:
        swap_gates(model)
    if speed.fused_residual_dropout:
        swap_residual_dropout(model)
    if speed.compile_glue:  # last: it traces the forwards the swaps above installed
        compile_glue(model)
    if speed.compile_structure_module:
        compile_structure_module(model)
    return model


__all__ = [
    "FlashConfig",
    "HAS_TRITON",
    "ChannelFirstTriangleMultiplication",
    "ComputeDtypeLayerNorm",
    "EpilogueOuterProductMean",
    "EpilogueReluTransition",
    "FoldedKeyMaskTriangleAttention",
    "FusedResidualDropout",
    "FusedTransition",
    "GateEpilogueAttention",
    "MatvecBiasGradLinear",
    "ProjectedOuterProductMean",
    "SDPAAttentionCore",
    "SharedMaskBias",
    "StackedProjectionAttention",
    "TritonAttentionCore",
    "TritonLayerNorm",
    "TritonSigmoidGate",
    "apply_kernels",
    "apply_speedups",
    "compile_glue",
    "compile_structure_module",
    "keep_fp32",
    "recompute_outer_product_mean",
    "share_mask_biases",
    "swap_gate_epilogue",
    "swap_gates",
    "swap_linears",
    "swap_norm_projections",
    "swap_outer_product_epilogue",
    "swap_outer_product_mean",
    "swap_residual_dropout",
    "swap_transitions",
    "swap",
    "swap_attention_projections",
    "swap_triangle_multiplication",
]
