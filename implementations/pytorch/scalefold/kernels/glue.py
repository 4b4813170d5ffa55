"""Precision islands and `torch.compile` of the elementwise glue, applied from outside."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from scalefold.geometry.all_atom import warm_tables
from scalefold.kernels.swap import swap
from scalefold.model.msa import Transition
from scalefold.model.pair import OuterProductMean, TriangleMultiplication
from scalefold.model.structure_module import StructureModule

# The blocks whose eager cost is mostly elementwise kernels around a few matmuls
# (LayerNorm, sigmoid gates, masking, ReLU, the outer-product normalisation).
GLUE_MODULES: tuple[type[nn.Module], ...] = (Transition, OuterProductMean, TriangleMultiplication)


def _to_fp32(x: Any) -> Any:
    if isinstance(x, torch.Tensor) and x.is_floating_point() and x.dtype != torch.float32:
        return x.float()
    if isinstance(x, dict):
        return {k: _to_fp32(v) for k, v in x.items()}
    return x


class Fp32Island:
    """Mixin (`scalefold.kernels.swap`): the module runs in float32 inside a bf16 autocast
    region, its floating-point inputs cast up on entry."""

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        device_type = next(self.parameters()).device.type
        if not torch.is_autocast_enabled(device_type):
            return super().forward(*args, **kwargs)
        with torch.autocast(device_type=device_type, enabled=False):
            return super().forward(*[_to_fp32(a) for a in args],
                                   **{k: _to_fp32(v) for k, v in kwargs.items()})


class RecomputedInBackward:
    """Mixin (`scalefold.kernels.swap`): the module's activations are recomputed in
    backward instead of saved. For modules that draw no random numbers: the
    recomputation keeps no RNG state (`preserve_rng_state=False`), which keeps it
    CUDA-graph capturable."""

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        from torch.utils.checkpoint import checkpoint

        if not torch.is_grad_enabled():
            return super().forward(*args, **kwargs)
        return checkpoint(super().forward, *args, use_reentrant=False,
                          preserve_rng_state=False, **kwargs)


def keep_fp32(model: nn.Module,
              names: tuple[str, ...] = ("structure_module", "auxiliary_heads")) -> nn.Module:
    """Run the named submodules in float32 even inside a bf16 autocast region.

    The structure module's frames, the FAPE/violation geometry and the heads' logits are
    where bf16 rounding would reach the loss directly, and they cost little time (the
    public ScaleFold entry keeps them in fp32 too). Returns `model`.
    """
    for name in names:
        mod = getattr(model, name, None)
        if mod is not None:
            swap(mod, type(mod), Fp32Island)
    return model


def recompute_outer_product_mean(model: nn.Module) -> nn.Module:
    """Recompute every OuterProductMean in backward instead of saving its activations.

    Its input to `linear_out`, the outer product [*, N, N, c*c] (c = 32: 1024 channels),
    is the largest tensor a block saves: 128 MiB per block in bf16 at crop 256, ~6.4 GiB
    over the 48 Evoformer blocks. Recomputing it costs one einsum and one matmul per block.
    Returns `model`.
    """
    swap(model, OuterProductMean, RecomputedInBackward)
    return model


def _raise_recompile_limit() -> None:
    limit = max(64, torch._dynamo.config.cache_size_limit)
    torch._dynamo.config.cache_size_limit = limit
    if hasattr(torch._dynamo.config, "accumulated_cache_size_limit"):
        torch._dynamo.config.accumulated_cache_size_limit = max(
            limit * 4, torch._dynamo.config.accumulated_cache_size_limit)


def compile_glue(model: nn.Module, modules: tuple[type[nn.Module], ...] = GLUE_MODULES,
                 **compile_kwargs: Any) -> nn.Module:
    """`torch.compile` every instance of `modules` in place (`nn.Module.compile`).

    Shapes are static in training (fixed crop), so `dynamic=False` by default. Each
    instance shares its class's compiled code (parameters are graph inputs), but the
    (shape, grad-mode) combinations exceed Dynamo's default recompile limit of 8 for the
    transitions (MSA, extra MSA, pair, template widths x recycling without grad), so the
    limit is raised for the process. The evaluation copy, which runs at every length
    bucket, passes `dynamic=True`: one compile per module kind serves every length, where
    static shapes took 23 s of compiling per bucket (2026-12-04 call 23). A length equal to
    a channel width compiles once more: Dynamo gives equal sizes one symbol until they
    differ.
    """
    compile_kwargs.setdefault("dynamic", False)
    _raise_recompile_limit()
    for m in model.modules():
        if isinstance(m, modules):
            m.compile(**compile_kwargs)
    return model


def compile_structure_module(model: nn.Module, **compile_kwargs: Any) -> nn.Module:
    """`torch.compile` one layer of the structure module (`StructureModule.layer`: invariant
    point attention, transition, backbone update, torsion angles and atom positions), which
    its eight weight-sharing layers run in turn. In eager PyTorch a layer is ~260 small
    operations (2,059 a forward and 2,622 a backward for the eight at the crop, counted by
    torch.profiler on the CPU: perf-log 2026-12-04 section 14), launch-bound at any length.
    One layer is the unit because the eight unrolled had not finished compiling after ~240 s
    on the H200 (perf-log 2026-12-04 section 14); one layer compiles a graph an eighth that
    size, in seconds, and runs it eight times.
    Dropout draws through ATen's random number generator (`fallback_random`), which a
    captured CUDA graph replays with fresh offsets as it does the eager modules'.
    Shapes are static unless `dynamic=True`: the evaluation copy's compile
    (`eval_compile_structure_module`) is dynamic over the validation lengths, and gains
    where the layer's launches are most of a chain's time (the short chains: perf-log
    2026-12-06 section 3). Returns `model`."""
    if compile_kwargs.get("backend", "inductor") == "inductor":
        compile_kwargs.setdefault("options", {"fallback_random": True})
    compile_kwargs.setdefault("dynamic", False)
    _raise_recompile_limit()
    for m in model.modules():
        if isinstance(m, StructureModule):
            # The residue tables on the module's device before the first trace: traced
            # into the graph instead, their first eager use would force a recompile.
            warm_tables(next(m.parameters()).device)
            # An instance attribute shadows the method: the model's code stays plain.
            m.layer = torch.compile(m.layer, **compile_kwargs)
    return model

