"""Test helper: read the PDB files in this folder into the atom37 layout."""

from __future__ import annotations

import gzip
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import biotite.structure as struc
import biotite.structure.io.pdb as pdb
import numpy as np

from scalefold.geometry import residue_constants as rc

DATA_DIR = Path(__file__).resolve().parent
CHAIN_FILES = ("2cviA.pdb.gz", "1bvyF.pdb.gz")


@dataclass(frozen=True)
class Chain:
    name: str
    aatype: np.ndarray  # [N] int
    residue_index: np.ndarray  # [N] int (author numbering)
    all_atom_positions: np.ndarray  # [N, 37, 3] float64
    all_atom_mask: np.ndarray  # [N, 37] float64


def load_chain(file_name: str) -> Chain:
    with gzip.open(DATA_DIR / file_name, "rt") as handle, warnings.catch_warnings():
        # The files carry element symbols; biotite still notes that it checked them.
        warnings.simplefilter("ignore", UserWarning)
        atoms = pdb.PDBFile.read(io.StringIO(handle.read())).get_structure(model=1)
    atoms = atoms[struc.filter_amino_acids(atoms) & ~atoms.hetero]
    starts = struc.get_residue_starts(atoms)
    n = len(starts)
    aatype = np.zeros(n, dtype=np.int64)
    residue_index = np.zeros(n, dtype=np.int64)
    positions = np.zeros((n, 37, 3))
    mask = np.zeros((n, 37))
    bounds = list(starts) + [atoms.array_length()]
    for i in range(n):
        residue = atoms[bounds[i] : bounds[i + 1]]
        one_letter = rc.restype_3to1.get(residue.res_name[0], "X")
        aatype[i] = rc.restype_order_with_x[one_letter]
        residue_index[i] = residue.res_id[0]
        for atom in residue:
            slot = rc.atom_order.get(atom.atom_name)
            if slot is not None and not mask[i, slot]:
                positions[i, slot] = atom.coord
                mask[i, slot] = 1.0
    return Chain(file_name.split(".")[0], aatype, residue_index, positions, mask)


def load_all() -> list[Chain]:
    return [load_chain(name) for name in CHAIN_FILES]
