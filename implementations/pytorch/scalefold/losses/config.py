"""Typed configuration of the AlphaFold2 training loss.

`LossConfig.mlperf()` is the MLPerf HPC OpenFold (closed division) loss: every number is
the MLPerf reference's (mlcommons/hpc, openfold/openfold/config.py: `LossConfig` and
`AlphaFoldConfig.use_clamped_fape_probability`), which are AlphaFold2's
initial-training values. The eps values are the reference's configured ones; where
AlphaFold hard-codes another eps it is noted at the term.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


def _check_weight(name: str, value: float) -> None:
    if not value >= 0.0:
        raise ValueError(f"{name} must be >= 0, got {value}")


@dataclass(frozen=True)
class FAPELossConfig:
    weight: float = 1.0
    backbone_clamp_distance: float = 10.0
    backbone_loss_unit_distance: float = 10.0
    backbone_weight: float = 0.5
    sidechain_clamp_distance: float = 10.0
    sidechain_length_scale: float = 10.0
    sidechain_weight: float = 0.5
    eps: float = 1e-4

    def __post_init__(self) -> None:
        for name in ("weight", "backbone_weight", "sidechain_weight"):
            _check_weight(name, getattr(self, name))


@dataclass(frozen=True)
class SupervisedChiLossConfig:
    weight: float = 1.0
    chi_weight: float = 0.5
    angle_norm_weight: float = 0.01
    eps: float = 1e-8

    def __post_init__(self) -> None:
        for name in ("weight", "chi_weight", "angle_norm_weight"):
            _check_weight(name, getattr(self, name))


@dataclass(frozen=True)
class DistogramLossConfig:
    weight: float = 0.3
    min_bin: float = 2.3125
    max_bin: float = 21.6875
    num_bins: int = 64
    eps: float = 1e-8

    def __post_init__(self) -> None:
        _check_weight("weight", self.weight)
        if self.num_bins < 2 or not self.max_bin > self.min_bin:
            raise ValueError("distogram needs num_bins >= 2 and max_bin > min_bin")


@dataclass(frozen=True)
class MaskedMSALossConfig:
    weight: float = 2.0
    num_classes: int = 23
    eps: float = 1e-8

    def __post_init__(self) -> None:
        _check_weight("weight", self.weight)


@dataclass(frozen=True)
class PLDDTLossConfig:
    weight: float = 0.01
    cutoff: float = 15.0
    min_resolution: float = 0.1
    max_resolution: float = 3.0
    num_bins: int = 50
    eps: float = 1e-8

    def __post_init__(self) -> None:
        _check_weight("weight", self.weight)


@dataclass(frozen=True)
class ExperimentallyResolvedLossConfig:
    weight: float = 0.0
    min_resolution: float = 0.1
    max_resolution: float = 3.0
    eps: float = 1e-8

    def __post_init__(self) -> None:
        _check_weight("weight", self.weight)


@dataclass(frozen=True)
class ViolationLossConfig:
    weight: float = 0.0
    violation_tolerance_factor: float = 12.0
    clash_overlap_tolerance: float = 1.5
    eps: float = 1e-8

    def __post_init__(self) -> None:
        _check_weight("weight", self.weight)


@dataclass(frozen=True)
class TMLossConfig:
    enabled: bool = False
    weight: float = 0.0
    min_resolution: float = 0.1
    max_resolution: float = 3.0
    num_bins: int = 64
    max_bin: int = 31
    eps: float = 1e-8

    def __post_init__(self) -> None:
        _check_weight("weight", self.weight)


@dataclass(frozen=True)
class LossConfig:
    fape: FAPELossConfig = field(default_factory=FAPELossConfig)
    supervised_chi: SupervisedChiLossConfig = field(default_factory=SupervisedChiLossConfig)
    distogram: DistogramLossConfig = field(default_factory=DistogramLossConfig)
    masked_msa: MaskedMSALossConfig = field(default_factory=MaskedMSALossConfig)
    plddt: PLDDTLossConfig = field(default_factory=PLDDTLossConfig)
    experimentally_resolved: ExperimentallyResolvedLossConfig = field(
        default_factory=ExperimentallyResolvedLossConfig
    )
    violation: ViolationLossConfig = field(default_factory=ViolationLossConfig)
    tm: TMLossConfig = field(default_factory=TMLossConfig)
    # Probability that a training sample uses clamped backbone FAPE (AF2 suppl. 1.11.5).
    # Consumed by whoever draws `use_clamped_fape` (see `use_clamped_fape_for_sample`).
    use_clamped_fape_probability: float = 0.9
    # The reference replaces a weighted term that is NaN/inf anywhere in the batch by 0
    # (and prints a warning). Off by default: the training loop should see non-finite
    # values (`check_finite_losses`) rather than train on silently.
    zero_nonfinite_terms: bool = False
    # Terms with weight 0 (experimentally resolved, violation, TM) are computed for the
    # breakdown as the reference does, without autograd. False skips them entirely (and
    # drops them from the breakdown), saving the O(N^2 * 14^2) violation pass per step.
    compute_zero_weight_terms: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.use_clamped_fape_probability <= 1.0:
            raise ValueError("use_clamped_fape_probability must lie in [0, 1]")

    @classmethod
    def mlperf(cls) -> LossConfig:
        """The MLPerf HPC OpenFold closed-division loss (the reference's values)."""
        return cls(
            fape=FAPELossConfig(
                weight=1.0,
                backbone_clamp_distance=10.0,
                backbone_loss_unit_distance=10.0,
                backbone_weight=0.5,
                sidechain_clamp_distance=10.0,
                sidechain_length_scale=10.0,
                sidechain_weight=0.5,
                eps=1e-4,
            ),
            supervised_chi=SupervisedChiLossConfig(
                weight=1.0, chi_weight=0.5, angle_norm_weight=0.01, eps=1e-8
            ),
            distogram=DistogramLossConfig(
                weight=0.3, min_bin=2.3125, max_bin=21.6875, num_bins=64, eps=1e-8
            ),
            masked_msa=MaskedMSALossConfig(weight=2.0, num_classes=23, eps=1e-8),
            plddt=PLDDTLossConfig(
                weight=0.01,
                cutoff=15.0,
                min_resolution=0.1,
                max_resolution=3.0,
                num_bins=50,
                eps=1e-8,
            ),
            experimentally_resolved=ExperimentallyResolvedLossConfig(
                weight=0.0, min_resolution=0.1, max_resolution=3.0, eps=1e-8
            ),
            violation=ViolationLossConfig(
                weight=0.0, violation_tolerance_factor=12.0, clash_overlap_tolerance=1.5, eps=1e-8
            ),
            tm=TMLossConfig(enabled=False, weight=0.0),
            use_clamped_fape_probability=0.9,
            zero_nonfinite_terms=False,
            compute_zero_weight_terms=True,
        )

    def mlperf_log_hparams(self) -> dict[str, float]:
        """The seven loss-weight keys the MLPerf HPC 3.0 compliance checker requires."""
        return {
            "fape_loss_weight": self.fape.weight,
            "fape_loss_backbone_weight": self.fape.backbone_weight,
            "fape_loss_sidechain_weight": self.fape.sidechain_weight,
            "supervised_chi_loss_weight": self.supervised_chi.weight,
            "distogram_loss_weight": self.distogram.weight,
            "masked_msa_loss_weight": self.masked_msa.weight,
            "plddt_loss_weight": self.plddt.weight,
        }

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
