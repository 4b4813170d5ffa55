"""The template pair stack once per evaluation forward instead of once per iteration.

The templates' pair representation (`AlphaFold.template_pairs`: pair features, embedder,
two pair-stack blocks) reads the template features alone, and those repeat over the
recycling iterations (non-ensembled features: docs/CONTRACTS.md, `data/features.py`).
Without dropout (evaluation mode) and without gradients, every iteration therefore
computes the same tensor; here the first iteration's is reused by the others, so a
4-iteration evaluation runs the stack once instead of four times, with the same bits.
In training the stack's dropout draws new masks every iteration: there it runs as is.

`template_features_repeat` checks a chain's features on the host (the evaluator calls it
before each chain), since a check inside the forward could not be captured in a CUDA
graph.
"""

from __future__ import annotations

import torch

from scalefold.kernels.swap import swap
from scalefold.model.alphafold import AlphaFold

TEMPLATE_PREFIX = "template_"


class TemplatePairsOncePerForward(AlphaFold):
    """`AlphaFold` (same parameters and state-dict names) whose evaluation forward
    computes the templates' pair representation once."""

    _template_cache: dict | None = None

    def forward(self, batch):
        if self.training or torch.is_grad_enabled():
            return super().forward(batch)
        self._template_cache = {}
        try:
            return super().forward(batch)
        finally:
            self._template_cache = None

    def template_pairs(self, feats, pair_mask, dtype):
        cache = self._template_cache
        if cache is None:
            return super().template_pairs(feats, pair_mask, dtype)
        if dtype not in cache:
            cache[dtype] = super().template_pairs(feats, pair_mask, dtype)
        return cache[dtype]


def template_features_repeat(batch: dict[str, torch.Tensor]) -> bool:
    """Whether every template feature (and the residue mask the stack reads) is the same
    in every recycling slice (the trailing dim) of `batch`."""
    for name, v in batch.items():
        if not isinstance(v, torch.Tensor) or not (
                name.startswith(TEMPLATE_PREFIX) or name == "seq_mask"):
            continue
        first = v[..., :1]
        if not torch.equal(v, first.expand_as(v)):
            return False
    return True


def reuse_template_pairs(model: torch.nn.Module) -> torch.nn.Module:
    """`model` (an `AlphaFold`, in place) computes the template pair representation once
    per forward without dropout or gradients. Returns `model`."""
    swap(model, AlphaFold, TemplatePairsOncePerForward)
    return model
