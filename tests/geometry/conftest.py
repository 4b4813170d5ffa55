"""Shared fixtures for the geometry tests: protein-like chains and (when installed) a real
crystal structure."""

from __future__ import annotations

import gzip
import importlib.util
import pathlib

import numpy as np
import pytest
import torch

from scalefold.geometry import residue_constants as rc

from .geometry_helpers import build_chain


@pytest.fixture(scope="session")
def chain() -> dict[str, torch.Tensor]:
    """All 20 residue types plus UNK in a 24-residue chain, float64."""
    rng = np.random.default_rng(0)
    aatype = np.concatenate((np.arange(21), rng.integers(0, 20, 3)))
    rng.shuffle(aatype)
    return build_chain(aatype, seed=1)


@pytest.fixture(scope="session")
def chain_batch() -> dict[str, torch.Tensor]:
    """Two 12-residue chains (float32) with ~10% of the existing atoms masked out and the
    masked coordinates set to zero, as a parsed structure with unresolved atoms has."""
    rng = np.random.default_rng(2)
    chains = [build_chain(rng.integers(0, 21, 12), seed=s) for s in (3, 4)]
    out = {k: torch.stack([c[k] for c in chains]) for k in chains[0]}
    drop = torch.from_numpy(rng.random(out["all_atom_mask"].shape) < 0.1)
    out["all_atom_mask"] = out["all_atom_mask"] * (~drop)
    out["all_atom_positions"] = out["all_atom_positions"] * out["all_atom_mask"][..., None]
    out["all_atom_positions"] = out["all_atom_positions"].float()
    out["all_atom_mask"] = out["all_atom_mask"].float()
    return out


def _mdanalysis_data() -> pathlib.Path | None:
    spec = importlib.util.find_spec("MDAnalysisTests")
    if spec is None or spec.origin is None:
        return None
    return pathlib.Path(spec.origin).parent / "data"


@pytest.fixture(scope="session")
def bpti() -> dict[str, torch.Tensor]:
    """Chain A of PDB 5PTI (bovine pancreatic trypsin inhibitor, 58 residues) in atom37
    layout, float32, from the mmCIF file shipped with the MDAnalysisTests package."""
    data = _mdanalysis_data()
    path = data / "mmcif" / "5PTI.cif.gz" if data else None
    if path is None or not path.exists():
        pytest.skip("MDAnalysisTests (5PTI.cif.gz) not installed")
    import biotite.structure as struc
    import biotite.structure.io.pdbx as pdbx

    with gzip.open(path, "rt") as handle:
        cif = pdbx.CIFFile.read(handle)
    atoms = pdbx.get_structure(cif, model=1, altloc="first")
    atoms = atoms[(atoms.chain_id == "A") & struc.filter_amino_acids(atoms) & ~atoms.hetero]
    starts = struc.get_residue_starts(atoms)
    n = len(starts)
    aatype = np.zeros(n, dtype=np.int64)
    pos = np.zeros((n, 37, 3), dtype=np.float32)
    mask = np.zeros((n, 37), dtype=np.float32)
    for i, (lo, hi) in enumerate(zip(starts, list(starts[1:]) + [len(atoms)])):
        res = atoms[lo:hi]
        aatype[i] = rc.resname_to_idx.get(res.res_name[0], rc.unk_restype_index)
        for name, xyz in zip(res.atom_name, res.coord):
            if name in rc.atom_order:
                pos[i, rc.atom_order[name]] = xyz
                mask[i, rc.atom_order[name]] = 1.0
    return {
        "aatype": torch.from_numpy(aatype),
        "all_atom_positions": torch.from_numpy(pos),
        "all_atom_mask": torch.from_numpy(mask),
    }
