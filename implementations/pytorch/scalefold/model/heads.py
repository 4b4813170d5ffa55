"""Auxiliary heads (AlphaFold2 supplement, 1.9)."""

from __future__ import annotations

import torch
from torch import nn

from scalefold.model.config import HeadsConfig
from scalefold.model.primitives import LayerNorm, Linear


class PLDDTHead(nn.Module):
    """Per-residue lDDT-Cα bins from the structure module's final single (Algorithm 29)."""

    def __init__(self, c_s: int, c_hidden: int, num_bins: int) -> None:
        super().__init__()
        self.layer_norm = LayerNorm(c_s)
        self.linear_1 = Linear(c_s, c_hidden, init="relu")
        self.linear_2 = Linear(c_hidden, c_hidden, init="relu")
        self.linear_3 = Linear(c_hidden, num_bins, init="final")

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        s = torch.relu(self.linear_1(self.layer_norm(s)))
        return self.linear_3(torch.relu(self.linear_2(s)))


class DistogramHead(nn.Module):
    def __init__(self, c_z: int, num_bins: int) -> None:
        super().__init__()
        self.linear = Linear(c_z, num_bins, init="final")

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        logits = self.linear(z)  # [*, N, N, bins]
        return logits + logits.transpose(-2, -3)  # symmetric in (i, j)


class LinearHead(nn.Module):
    """One linear layer: masked-MSA, experimentally-resolved and TM heads."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.linear = Linear(c_in, c_out, init="final")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


class AuxiliaryHeads(nn.Module):
    def __init__(self, cfg: HeadsConfig, c_m: int, c_z: int, c_s: int) -> None:
        super().__init__()
        self.plddt = PLDDTHead(c_s, cfg.c_hidden_plddt, cfg.num_plddt_bins)
        self.distogram = DistogramHead(c_z, cfg.num_distogram_bins)
        self.masked_msa = LinearHead(c_m, cfg.num_msa_classes)
        self.experimentally_resolved = LinearHead(c_s, cfg.num_atom37)
        self.tm = LinearHead(c_z, cfg.num_tm_bins) if cfg.tm_enabled else None

    def forward(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        aux = {
            "lddt_logits": self.plddt(outputs["sm_single"]),
            "distogram_logits": self.distogram(outputs["pair"]),
            "masked_msa_logits": self.masked_msa(outputs["msa"]),
            "experimentally_resolved_logits": self.experimentally_resolved(outputs["single"]),
        }
        if self.tm is not None:
            aux["tm_logits"] = self.tm(outputs["pair"])
        return aux
