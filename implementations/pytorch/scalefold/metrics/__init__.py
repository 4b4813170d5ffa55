"""Structure-quality metrics: the benchmark's lDDT-Cα and report metrics."""

from scalefold.metrics.lddt import (
    CA_INDEX,
    LDDT_THRESHOLDS,
    VALIDATION_EPS,
    lddt,
    lddt_all_atom,
    lddt_ca,
    mean_over_chains,
)
from scalefold.metrics.superposition import ca_rmsd, gdt_ha, gdt_ts, superimpose

__all__ = [
    "CA_INDEX",
    "LDDT_THRESHOLDS",
    "VALIDATION_EPS",
    "ca_rmsd",
    "gdt_ha",
    "gdt_ts",
    "lddt",
    "lddt_all_atom",
    "lddt_ca",
    "mean_over_chains",
    "superimpose",
]
