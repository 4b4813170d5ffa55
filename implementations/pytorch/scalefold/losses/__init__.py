"""AlphaFold2 training losses with the MLPerf HPC OpenFold reference's conventions.

One module per term; `AlphaFoldLoss` assembles them. See docs/LOSSES.md.
"""

from scalefold.losses.alphafold_loss import (
    TERM_NAMES,
    AlphaFoldLoss,
    NonFiniteLossError,
    check_finite_losses,
    draw_use_clamped_fape,
    use_clamped_fape_for_sample,
)
from scalefold.losses.chi import supervised_chi_loss
from scalefold.losses.config import (
    DistogramLossConfig,
    ExperimentallyResolvedLossConfig,
    FAPELossConfig,
    LossConfig,
    MaskedMSALossConfig,
    PLDDTLossConfig,
    SupervisedChiLossConfig,
    TMLossConfig,
    ViolationLossConfig,
)
from scalefold.losses.distogram import distogram_loss
from scalefold.losses.experimentally_resolved import experimentally_resolved_loss
from scalefold.losses.fape import backbone_loss, compute_fape, sidechain_loss
from scalefold.losses.masked_msa import masked_msa_loss
from scalefold.losses.plddt import compute_plddt, plddt_loss, plddt_targets
from scalefold.losses.renaming import compute_renamed_ground_truth
from scalefold.losses.tm import tm_loss
from scalefold.losses.violation import (
    find_structural_violations,
    make_violation_tables,
    violation_loss,
)

__all__ = [
    "TERM_NAMES",
    "AlphaFoldLoss",
    "DistogramLossConfig",
    "ExperimentallyResolvedLossConfig",
    "FAPELossConfig",
    "LossConfig",
    "MaskedMSALossConfig",
    "NonFiniteLossError",
    "PLDDTLossConfig",
    "SupervisedChiLossConfig",
    "TMLossConfig",
    "ViolationLossConfig",
    "backbone_loss",
    "check_finite_losses",
    "compute_fape",
    "compute_plddt",
    "compute_renamed_ground_truth",
    "distogram_loss",
    "draw_use_clamped_fape",
    "experimentally_resolved_loss",
    "find_structural_violations",
    "make_violation_tables",
    "masked_msa_loss",
    "plddt_loss",
    "plddt_targets",
    "sidechain_loss",
    "supervised_chi_loss",
    "tm_loss",
    "use_clamped_fape_for_sample",
    "violation_loss",
]
