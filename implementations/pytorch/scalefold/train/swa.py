"""SWA as the benchmark defines it: an exponential moving average of the weights
(decay 0.9), kept in float32 and used for evaluation."""

from __future__ import annotations

import torch
from torch import nn


class WeightEMA:
    """fp32 shadow copies of a model's parameters, updated after every optimizer step.

    The first update copies the weights (as `torch.optim.swa_utils.AveragedModel`, which
    the reference uses, does); later ones compute avg ← avg + (1 − decay)(w − avg).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.names = [n for n, _ in model.named_parameters()]
        self.shadow = [p.detach().float().clone() for p in model.parameters()]
        self.num_updates = 0

    def _sources(self, model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return self.shadow, [p.detach().float() for p in model.parameters()]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        shadow, params = self._sources(model)
        if self.num_updates == 0:
            torch._foreach_copy_(shadow, params)
        else:
            torch._foreach_lerp_(shadow, params, 1.0 - self.decay)
        self.num_updates += 1

    @torch.no_grad()
    def copy_from(self, model: nn.Module) -> None:
        """Count an update whose result is a plain copy of the weights (the first one)."""
        torch._foreach_copy_(*self._sources(model))
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the averaged weights into `model` (an evaluation copy)."""
        for p, s in zip(model.parameters(), self.shadow, strict=True):
            p.copy_(s.to(p.dtype))

    def state_dict(self) -> dict:
        return {
            "decay": self.decay,
            "num_updates": self.num_updates,
            "shadow": dict(zip(self.names, self.shadow, strict=True)),
        }

    def load_state_dict(self, state: dict) -> None:
        shadow = state["shadow"]
        missing = [n for n in self.names if n not in shadow]
        if missing or len(shadow) != len(self.names):
            raise ValueError(f"SWA state does not match the model (missing {missing[:5]})")
        for i, n in enumerate(self.names):
            if shadow[n].shape != self.shadow[i].shape:
                raise ValueError(f"SWA tensor {n} has shape {tuple(shadow[n].shape)}, "
                                 f"model has {tuple(self.shadow[i].shape)}")
            self.shadow[i].copy_(shadow[n])
        self.decay = float(state["decay"])
        self.num_updates = int(state["num_updates"])
