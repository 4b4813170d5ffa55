"""One training forward (n=0) of a preset at its benchmark shapes, for benches that record
what the model calls (attention signatures, LayerNorm shapes)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def recorded_forward(preset: str, device: torch.device, seed: int,
                     instrument: Callable[[nn.Module], None]) -> None:
    """Build the preset's model with the Triton kernels (bf16, bf16 LayerNorm outputs),
    let `instrument` patch it, and run one forward on a synthetic batch.

    Activation checkpointing keeps that forward small; the calls are the same.
    """
    from scalefold.bench.step import PRESET_SHAPES, StepRunner, Variant, _slice
    from scalefold.model import AlphaFoldConfig
    from scalefold.utils.synthetic import synthetic_batch

    shapes = PRESET_SHAPES[preset]
    variant = Variant("record", precision="bf16", attention="triton", layer_norm="triton",
                      layer_norm_output="compute")
    model_cfg = getattr(AlphaFoldConfig, preset)()
    runner = StepRunner(model_cfg, variant, device, seed, activation_checkpointing=True)
    instrument(runner.model)
    batch = synthetic_batch(model_cfg, shapes.n_res, shapes.n_clust, shapes.n_extra,
                            shapes.n_templ, num_iterations=1, seed=seed, device=device)
    with runner.autocast():
        runner.model(_slice(batch, 0))
