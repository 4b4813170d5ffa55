"""Random weights for every tensor of a configuration, in the reference layout.

AlphaFold (and the reference) zero-initialise the last layer of most blocks, which lets a
wrong mapping or a mis-wired block go unnoticed; parity tests start from these instead.
Scales keep activations O(1) through a few blocks: weights ~ N(0, 1/fan_in), biases and
LayerNorm offsets ~ N(0, 0.1^2), LayerNorm scales ~ 1 + N(0, 0.1^2).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from scalefold.checkpoint.alphafold_params import parameter_mapping


def random_reference_state_dict(
    cfg: Any, seed: int = 0, *, dtype: torch.dtype = torch.float32
) -> dict[str, torch.Tensor]:
    """Reference name -> random tensor for an `AlphaFoldConfig`, reproducible by seed."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for entry in parameter_mapping(cfg):
        shape = entry.ref_shape
        noise = torch.randn(shape, generator=generator, dtype=torch.float64)
        if entry.n_in is not None:
            fan_in = math.prod(entry.af_shape[: entry.n_in])
            value = noise / math.sqrt(fan_in)
        elif entry.af_name == "scale":
            value = 1.0 + 0.1 * noise
        else:
            value = 0.1 * noise
        state[entry.ref] = value.to(dtype)
    return state
