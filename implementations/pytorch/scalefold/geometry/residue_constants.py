"""AlphaFold2 residue constants: atom naming, idealised residue geometry, chi-angle
definitions and the lookup tables derived from them.

Source of every name and number here: AlphaFold v2.3, ``alphafold/common/residue_constants.py``
and ``alphafold/common/stereo_chemical_props.txt`` (DeepMind, Apache License 2.0). Only the data
are carried over (as text tables parsed at import); the code deriving the tables is this
project's own.

All module-level values are immutable: tuples, read-only mappings (``MappingProxyType``) and
numpy arrays with ``writeable=False``, so that importing modules cannot corrupt shared tables.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Mapping
from importlib import resources
from typing import NamedTuple

import numpy as np


def _ro(d: dict) -> Mapping:
    return types.MappingProxyType(d)


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


# Ideal distance between consecutive CA atoms (trans peptide, omega = 180 degrees).
ca_ca = 3.80209737096

# --------------------------------------------------------------------------------------
# Residue and atom alphabets.
# --------------------------------------------------------------------------------------

# One-letter codes ordered by their alphabetically sorted three-letter names; this order
# defines every `aatype` index in the project (20 = unknown).
restypes = tuple("ARNDCQEGHILKMFPSTWYV")
_RESNAMES_3 = (
    "ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE",
    "LEU", "LYS", "MET", "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL",
)  # fmt: skip
restype_order = _ro({r: i for i, r in enumerate(restypes)})
restype_num = len(restypes)  # 20
unk_restype_index = restype_num
restypes_with_x = restypes + ("X",)
restype_order_with_x = _ro({r: i for i, r in enumerate(restypes_with_x)})
restypes_with_x_and_gap = restypes + ("X", "-")

restype_1to3 = _ro(dict(zip(restypes, _RESNAMES_3)))
# Deliberately a strict 1:1 inverse (no extra aliases such as MSE), as in AlphaFold.
restype_3to1 = _ro({three: one for one, three in restype_1to3.items()})
unk_restype = "UNK"
resnames = _RESNAMES_3 + (unk_restype,)
resname_to_idx = _ro({name: i for i, name in enumerate(resnames)})

PROTEIN_CHAIN = "polypeptide(L)"
POLYMER_CHAIN = "polymer"

atom_types = (
    "N", "CA", "C", "CB", "O", "CG", "CG1", "CG2", "OG", "OG1", "SG", "CD",
    "CD1", "CD2", "ND1", "ND2", "OD1", "OD2", "SD", "CE", "CE1", "CE2", "CE3",
    "NE", "NE1", "NE2", "OE1", "OE2", "CH2", "NH1", "NH2", "OH", "CZ", "CZ2",
    "CZ3", "NZ", "OXT",
)  # fmt: skip
atom_order = _ro({name: i for i, name in enumerate(atom_types)})
atom_type_num = len(atom_types)  # 37

# --------------------------------------------------------------------------------------
# Data tables (AlphaFold v2.3), one residue per line unless stated otherwise.
# --------------------------------------------------------------------------------------

# Idealised heavy-atom positions relative to the rigid group they belong to:
# `resname atom group x y z`. Groups: 0 backbone, 1 pre-omega (empty), 2 phi (empty, it
# would hold only hydrogens), 3 psi, 4..7 chi1..chi4. Each group frame has its x-axis
# along the rotation axis, ending at the frame origin, and the atom defining the torsion
# in the xy-plane with positive y.
_RIGID_GROUP_ATOMS = """
ALA N    0  -0.525   1.363   0.000
ALA CA   0   0.000   0.000   0.000
ALA C    0   1.526  -0.000  -0.000
ALA CB   0  -0.529  -0.774  -1.205
ALA O    3   0.627   1.062   0.000
ARG N    0  -0.524   1.362  -0.000
ARG CA   0   0.000   0.000   0.000
ARG C    0   1.525  -0.000  -0.000
ARG CB   0  -0.524  -0.778  -1.209
ARG O    3   0.626   1.062   0.000
ARG CG   4   0.616   1.390  -0.000
ARG CD   5   0.564   1.414   0.000
ARG NE   6   0.539   1.357  -0.000
ARG NH1  7   0.206   2.301   0.000
ARG NH2  7   2.078   0.978  -0.000
ARG CZ   7   0.758   1.093  -0.000
ASN N    0  -0.536   1.357   0.000
ASN CA   0   0.000   0.000   0.000
ASN C    0   1.526  -0.000  -0.000
ASN CB   0  -0.531  -0.787  -1.200
ASN O    3   0.625   1.062   0.000
ASN CG   4   0.584   1.399   0.000
ASN ND2  5   0.593  -1.188   0.001
ASN OD1  5   0.633   1.059   0.000
ASP N    0  -0.525   1.362  -0.000
ASP CA   0   0.000   0.000   0.000
ASP C    0   1.527   0.000  -0.000
ASP CB   0  -0.526  -0.778  -1.208
ASP O    3   0.626   1.062  -0.000
ASP CG   4   0.593   1.398  -0.000
ASP OD1  5   0.610   1.091   0.000
ASP OD2  5   0.592  -1.101  -0.003
CYS N    0  -0.522   1.362  -0.000
CYS CA   0   0.000   0.000   0.000
CYS C    0   1.524   0.000   0.000
CYS CB   0  -0.519  -0.773  -1.212
CYS O    3   0.625   1.062  -0.000
CYS SG   4   0.728   1.653   0.000
GLN N    0  -0.526   1.361  -0.000
GLN CA   0   0.000   0.000   0.000
GLN C    0   1.526   0.000   0.000
GLN CB   0  -0.525  -0.779  -1.207
GLN O    3   0.626   1.062  -0.000
GLN CG   4   0.615   1.393   0.000
GLN CD   5   0.587   1.399  -0.000
GLN NE2  6   0.593  -1.189  -0.001
GLN OE1  6   0.634   1.060   0.000
GLU N    0  -0.528   1.361   0.000
GLU CA   0   0.000   0.000   0.000
GLU C    0   1.526  -0.000  -0.000
GLU CB   0  -0.526  -0.781  -1.207
GLU O    3   0.626   1.062   0.000
GLU CG   4   0.615   1.392   0.000
GLU CD   5   0.600   1.397   0.000
GLU OE1  6   0.607   1.095  -0.000
GLU OE2  6   0.589  -1.104  -0.001
GLY N    0  -0.572   1.337   0.000
GLY CA   0   0.000   0.000   0.000
GLY C    0   1.517  -0.000  -0.000
GLY O    3   0.626   1.062  -0.000
HIS N    0  -0.527   1.360   0.000
HIS CA   0   0.000   0.000   0.000
HIS C    0   1.525   0.000   0.000
HIS CB   0  -0.525  -0.778  -1.208
HIS O    3   0.625   1.063   0.000
HIS CG   4   0.600   1.370  -0.000
HIS CD2  5   0.889  -1.021   0.003
HIS ND1  5   0.744   1.160  -0.000
HIS CE1  5   2.030   0.851   0.002
HIS NE2  5   2.145  -0.466   0.004
ILE N    0  -0.493   1.373  -0.000
ILE CA   0   0.000   0.000   0.000
ILE C    0   1.527  -0.000  -0.000
ILE CB   0  -0.536  -0.793  -1.213
ILE O    3   0.627   1.062  -0.000
ILE CG1  4   0.534   1.437  -0.000
ILE CG2  4   0.540  -0.785  -1.199
ILE CD1  5   0.619   1.391   0.000
LEU N    0  -0.520   1.363   0.000
LEU CA   0   0.000   0.000   0.000
LEU C    0   1.525  -0.000  -0.000
LEU CB   0  -0.522  -0.773  -1.214
LEU O    3   0.625   1.063  -0.000
LEU CG   4   0.678   1.371   0.000
LEU CD1  5   0.530   1.430  -0.000
LEU CD2  5   0.535  -0.774   1.200
LYS N    0  -0.526   1.362  -0.000
LYS CA   0   0.000   0.000   0.000
LYS C    0   1.526   0.000   0.000
LYS CB   0  -0.524  -0.778  -1.208
LYS O    3   0.626   1.062  -0.000
LYS CG   4   0.619   1.390   0.000
LYS CD   5   0.559   1.417   0.000
LYS CE   6   0.560   1.416   0.000
LYS NZ   7   0.554   1.387   0.000
MET N    0  -0.521   1.364  -0.000
MET CA   0   0.000   0.000   0.000
MET C    0   1.525   0.000   0.000
MET CB   0  -0.523  -0.776  -1.210
MET O    3   0.625   1.062  -0.000
MET CG   4   0.613   1.391  -0.000
MET SD   5   0.703   1.695   0.000
MET CE   6   0.320   1.786  -0.000
PHE N    0  -0.518   1.363   0.000
PHE CA   0   0.000   0.000   0.000
PHE C    0   1.524   0.000  -0.000
PHE CB   0  -0.525  -0.776  -1.212
PHE O    3   0.626   1.062  -0.000
PHE CG   4   0.607   1.377   0.000
PHE CD1  5   0.709   1.195  -0.000
PHE CD2  5   0.706  -1.196   0.000
PHE CE1  5   2.102   1.198  -0.000
PHE CE2  5   2.098  -1.201  -0.000
PHE CZ   5   2.794  -0.003  -0.001
PRO N    0  -0.566   1.351  -0.000
PRO CA   0   0.000   0.000   0.000
PRO C    0   1.527  -0.000   0.000
PRO CB   0  -0.546  -0.611  -1.293
PRO O    3   0.621   1.066   0.000
PRO CG   4   0.382   1.445   0.000
PRO CD   5   0.477   1.424   0.000
SER N    0  -0.529   1.360  -0.000
SER CA   0   0.000   0.000   0.000
SER C    0   1.525  -0.000  -0.000
SER CB   0  -0.518  -0.777  -1.211
SER O    3   0.626   1.062  -0.000
SER OG   4   0.503   1.325   0.000
THR N    0  -0.517   1.364   0.000
THR CA   0   0.000   0.000   0.000
THR C    0   1.526   0.000  -0.000
THR CB   0  -0.516  -0.793  -1.215
THR O    3   0.626   1.062   0.000
THR CG2  4   0.550  -0.718  -1.228
THR OG1  4   0.472   1.353   0.000
TRP N    0  -0.521   1.363   0.000
TRP CA   0   0.000   0.000   0.000
TRP C    0   1.525  -0.000   0.000
TRP CB   0  -0.523  -0.776  -1.212
TRP O    3   0.627   1.062   0.000
TRP CG   4   0.609   1.370  -0.000
TRP CD1  5   0.824   1.091   0.000
TRP CD2  5   0.854  -1.148  -0.005
TRP CE2  5   2.186  -0.678  -0.007
TRP CE3  5   0.622  -2.530  -0.007
TRP NE1  5   2.140   0.690  -0.004
TRP CH2  5   3.028  -2.890  -0.013
TRP CZ2  5   3.283  -1.543  -0.011
TRP CZ3  5   1.715  -3.389  -0.011
TYR N    0  -0.522   1.362   0.000
TYR CA   0   0.000   0.000   0.000
TYR C    0   1.524  -0.000  -0.000
TYR CB   0  -0.522  -0.776  -1.213
TYR O    3   0.627   1.062  -0.000
TYR CG   4   0.607   1.382  -0.000
TYR CD1  5   0.716   1.195  -0.000
TYR CD2  5   0.713  -1.194  -0.001
TYR CE1  5   2.107   1.200  -0.002
TYR CE2  5   2.104  -1.201  -0.003
TYR OH   5   4.168  -0.002  -0.005
TYR CZ   5   2.791  -0.001  -0.003
VAL N    0  -0.494   1.373  -0.000
VAL CA   0   0.000   0.000   0.000
VAL C    0   1.527  -0.000  -0.000
VAL CB   0  -0.533  -0.795  -1.213
VAL O    3   0.627   1.062  -0.000
VAL CG1  4   0.540   1.429  -0.000
VAL CG2  4   0.533  -0.776   1.203
"""

# 14-slot compact atom layout per residue type ("-" marks an empty slot).
_ATOM14_NAMES = """
ALA N CA C O CB - - - - - - - - -
ARG N CA C O CB CG CD NE CZ NH1 NH2 - - -
ASN N CA C O CB CG OD1 ND2 - - - - - -
ASP N CA C O CB CG OD1 OD2 - - - - - -
CYS N CA C O CB SG - - - - - - - -
GLN N CA C O CB CG CD OE1 NE2 - - - - -
GLU N CA C O CB CG CD OE1 OE2 - - - - -
GLY N CA C O - - - - - - - - - -
HIS N CA C O CB CG ND1 CD2 CE1 NE2 - - - -
ILE N CA C O CB CG1 CG2 CD1 - - - - - -
LEU N CA C O CB CG CD1 CD2 - - - - - -
LYS N CA C O CB CG CD CE NZ - - - - -
MET N CA C O CB CG SD CE - - - - - -
PHE N CA C O CB CG CD1 CD2 CE1 CE2 CZ - - -
PRO N CA C O CB CG CD - - - - - - -
SER N CA C O CB OG - - - - - - - -
THR N CA C O CB OG1 CG2 - - - - - - -
TRP N CA C O CB CG CD1 CD2 NE1 CE2 CE3 CZ2 CZ3 CH2
TYR N CA C O CB CG CD1 CD2 CE1 CE2 CZ OH - -
VAL N CA C O CB CG1 CG2 - - - - - - -
UNK - - - - - - - - - - - - - -
"""

# Chi angles as four atom names each, chi1 first, chi groups separated by "|". (Arginine's
# chi5 is always near 0 and is left out.)
_CHI_ATOMS = """
ALA
ARG N CA CB CG | CA CB CG CD | CB CG CD NE | CG CD NE CZ
ASN N CA CB CG | CA CB CG OD1
ASP N CA CB CG | CA CB CG OD1
CYS N CA CB SG
GLN N CA CB CG | CA CB CG CD | CB CG CD OE1
GLU N CA CB CG | CA CB CG CD | CB CG CD OE1
GLY
HIS N CA CB CG | CA CB CG ND1
ILE N CA CB CG1 | CA CB CG1 CD1
LEU N CA CB CG | CA CB CG CD1
LYS N CA CB CG | CA CB CG CD | CB CG CD CE | CG CD CE NZ
MET N CA CB CG | CA CB CG SD | CB CG SD CE
PHE N CA CB CG | CA CB CG CD1
PRO N CA CB CG | CA CB CG CD
SER N CA CB OG
THR N CA CB OG1
TRP N CA CB CG | CA CB CG CD1
TYR N CA CB CG | CA CB CG CD1
VAL N CA CB CG1
"""

# Heavy atoms of each residue type (PDB names).
_RESIDUE_ATOMS = """
ALA C CA CB N O
ARG C CA CB CG CD CZ N NE O NH1 NH2
ASP C CA CB CG N O OD1 OD2
ASN C CA CB CG N ND2 O OD1
CYS C CA CB N O SG
GLU C CA CB CG CD N O OE1 OE2
GLN C CA CB CG CD N NE2 O OE1
GLY C CA N O
HIS C CA CB CG CD2 CE1 N ND1 NE2 O
ILE C CA CB CG1 CG2 CD1 N O
LEU C CA CB CG CD1 CD2 N O
LYS C CA CB CG CD CE N NZ O
MET C CA CB CG CE N O SD
PHE C CA CB CG CD1 CD2 CE1 CE2 CZ N O
PRO C CA CB CG CD N O
SER C CA CB N O OG
THR C CA CB CG2 N O OG1
TRP C CA CB CG CD1 CD2 CE2 CE3 CZ2 CZ3 CH2 N NE1 O
TYR C CA CB CG CD1 CD2 CE1 CE2 CZ N O OH
VAL C CA CB CG1 CG2 N O
"""


_PI_PERIODIC_CHI = {"ASP": 1, "GLU": 2, "PHE": 1, "TYR": 1}  # residue -> 0-based chi index


def _table_rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().splitlines()]


def _parse_rigid_group_atoms(text: str) -> Mapping:
    table: dict[str, list] = {}
    for res, atom, group, x, y, z in _table_rows(text):
        table.setdefault(res, []).append((atom, int(group), (float(x), float(y), float(z))))
    return _ro({res: tuple(rows) for res, rows in table.items()})


def _parse_chi_atoms(text: str) -> Mapping:
    table = {}
    for line in text.strip().splitlines():
        res, _, rest = line.partition(" ")
        groups = [g.split() for g in rest.split("|")] if rest.strip() else []
        table[res] = tuple(tuple(g) for g in groups)
    return _ro(table)


rigid_group_atom_positions = _parse_rigid_group_atoms(_RIGID_GROUP_ATOMS)
restype_name_to_atom14_names = _ro(
    {row[0]: tuple("" if a == "-" else a for a in row[1:]) for row in _table_rows(_ATOM14_NAMES)}
)
chi_angles_atoms = _parse_chi_atoms(_CHI_ATOMS)
residue_atoms = _ro({row[0]: tuple(row[1:]) for row in _table_rows(_RESIDUE_ATOMS)})

# Which chi angles exist, per restype [20, 4] (1.0 / 0.0), in `restypes` order.
chi_angles_mask = tuple(
    tuple(1.0 if k < len(chi_angles_atoms[res]) else 0.0 for k in range(4)) for res in _RESNAMES_3
)
# Chi angles that may be rotated by pi without changing the structure [21, 4] (incl. UNK).
chi_pi_periodic = tuple(
    tuple(1.0 if _PI_PERIODIC_CHI.get(res) == k else 0.0 for k in range(4)) for res in resnames
)

# Atom names made ambiguous by a 180-degree side-chain symmetry. (LEU, VAL and ARG are
# also symmetric in lDDT's sense but their naming can be resolved from the geometry.)
residue_atom_renaming_swaps = _ro(
    {
        "ASP": _ro({"OD1": "OD2"}),
        "GLU": _ro({"OE1": "OE2"}),
        "PHE": _ro({"CD1": "CD2", "CE1": "CE2"}),
        "TYR": _ro({"CD1": "CD2", "CE1": "CE2"}),
    }
)

# Van der Waals radii [Angstrom] by element.
van_der_waals_radius = _ro({"C": 1.7, "N": 1.55, "O": 1.52, "S": 1.8})

# Peptide-bond geometry between consecutive residues: (general, proline) lengths
# [Angstrom] and (mean, stddev) of the bond-angle cosines.
between_res_bond_length_c_n = (1.329, 1.341)
between_res_bond_length_stddev_c_n = (0.014, 0.016)
between_res_cos_angles_c_n_ca = (-0.5203, 0.0353)  # 121.352 +- 2.315 degrees
between_res_cos_angles_ca_c_n = (-0.4473, 0.0311)  # 116.568 +- 1.995 degrees


# --------------------------------------------------------------------------------------
# Stereochemistry (bond lengths and angles from the literature).
# --------------------------------------------------------------------------------------


class Bond(NamedTuple):
    atom1_name: str
    atom2_name: str
    length: float
    stddev: float


class BondAngle(NamedTuple):
    atom1_name: str
    atom2_name: str
    atom3name: str  # field name kept as AlphaFold spells it, for drop-in use
    angle_rad: float
    stddev: float


def _stereo_sections() -> list[list[list[str]]]:
    text = resources.files(__package__).joinpath("stereo_chemical_props.txt").read_text()
    sections: list[list[list[str]]] = [[]]
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if line.strip() == "-":
            sections.append([])
        elif line.strip():
            sections[-1].append(line.split())
    # Each section starts with its column header.
    return [rows[1:] for rows in sections]


@functools.cache
def load_stereo_chemical_props() -> tuple[Mapping, Mapping, Mapping]:
    """Literature bond lengths and angles per residue name.

    Returns ``(residue_bonds, residue_virtual_bonds, residue_bond_angles)``, each a read-only
    mapping from three-letter residue name (plus ``"UNK"``, empty) to a tuple of ``Bond`` /
    ``BondAngle``. A virtual bond is the distance between the outer atoms of a bond angle,
    from the law of cosines, with its stddev from first-order error propagation.
    """
    bond_rows, angle_rows = _stereo_sections()[:2]
    bonds: dict[str, list[Bond]] = {}
    for pair, res, length, std in bond_rows:
        a1, a2 = pair.split("-")
        bonds.setdefault(res, []).append(Bond(a1, a2, float(length), float(std)))
    bonds["UNK"] = []
    angles: dict[str, list[BondAngle]] = {}
    for triple, res, deg, std_deg in angle_rows:
        a1, a2, a3 = triple.split("-")
        angles.setdefault(res, []).append(
            BondAngle(a1, a2, a3, float(deg) / 180.0 * np.pi, float(std_deg) / 180.0 * np.pi)
        )
    angles["UNK"] = []

    virtual: dict[str, list[Bond]] = {}
    for res, res_angles in angles.items():
        by_pair = {frozenset((b.atom1_name, b.atom2_name)): b for b in bonds[res]}
        virtual[res] = []
        for ang in res_angles:
            b1 = by_pair[frozenset((ang.atom1_name, ang.atom2_name))]
            b2 = by_pair[frozenset((ang.atom2_name, ang.atom3name))]
            l1, l2, gamma = b1.length, b2.length, ang.angle_rad
            length = np.sqrt(l1**2 + l2**2 - 2 * l1 * l2 * np.cos(gamma))
            # Partial derivatives of the opposite edge w.r.t. gamma, l1 and l2.
            half_inv = 0.5 / length
            d_gamma = (2 * l1 * l2 * np.sin(gamma)) * half_inv
            d_l1 = (2 * l1 - 2 * l2 * np.cos(gamma)) * half_inv
            d_l2 = (2 * l2 - 2 * l1 * np.cos(gamma)) * half_inv
            std = np.sqrt(
                (d_gamma * ang.stddev) ** 2 + (d_l1 * b1.stddev) ** 2 + (d_l2 * b2.stddev) ** 2
            )
            virtual[res].append(Bond(ang.atom1_name, ang.atom3name, length, std))

    def freeze(d):
        return _ro({k: tuple(v) for k, v in d.items()})

    return freeze(bonds), freeze(virtual), freeze(angles)


# --------------------------------------------------------------------------------------
# Sequence encodings.
# --------------------------------------------------------------------------------------

# HHblits alphabet: 20 amino acids in one-letter alphabetical order, then X (20) and the
# gap (21); B, Z, U map to D, E, C and J, O to X.
_HHBLITS_ORDER = "ACDEFGHIKLMNPQRSTVWYX-"
_HHBLITS_ALIASES = {"B": "D", "Z": "E", "U": "C", "J": "X", "O": "X"}
HHBLITS_AA_TO_ID = _ro(
    dict(
        sorted(
            {
                **{aa: i for i, aa in enumerate(_HHBLITS_ORDER)},
                **{a: _HHBLITS_ORDER.index(t) for a, t in _HHBLITS_ALIASES.items()},
            }.items()
        )
    )
)
ID_TO_HHBLITS_AA = _ro(dict(enumerate(_HHBLITS_ORDER)))
MAP_HHBLITS_AATYPE_TO_OUR_AATYPE = tuple(
    restypes_with_x_and_gap.index(ID_TO_HHBLITS_AA[i]) for i in range(len(_HHBLITS_ORDER))
)


def sequence_to_onehot(
    sequence: str, mapping: Mapping[str, int], map_unknown_to_x: bool = False
) -> np.ndarray:
    """One-hot encode ``sequence`` as int32 ``[len(sequence), num_classes]``.

    ``mapping`` must use every index in ``0..num_classes-1``. Letters missing from it raise
    ``KeyError`` unless ``map_unknown_to_x``, in which case upper-case letters map to ``X``
    and anything else raises ``ValueError``.
    """
    num_classes = max(mapping.values()) + 1
    if sorted(set(mapping.values())) != list(range(num_classes)):
        raise ValueError(f"mapping values must cover 0..{num_classes - 1} without gaps")
    ids = []
    for aa in sequence:
        if map_unknown_to_x:
            if not (aa.isalpha() and aa.isupper()):
                raise ValueError(f"invalid character in sequence: {aa!r}")
            ids.append(mapping.get(aa, mapping["X"]))
        else:
            ids.append(mapping[aa])
    onehot = np.zeros((len(sequence), num_classes), dtype=np.int32)
    onehot[np.arange(len(ids)), ids] = 1
    return onehot


def atom_id_to_type(atom_id: str) -> str:
    """Element of a standard protein atom name (first letter among C, N, O, H, S)."""
    if atom_id[:1] in ("C", "N", "O", "H", "S"):
        return atom_id[0]
    raise ValueError(f"atom id not recognised: {atom_id!r}")


# --------------------------------------------------------------------------------------
# Derived lookup tables (numpy, read-only). Residue axis has 21 entries, UNK last.
# --------------------------------------------------------------------------------------


def _make_standard_atom_mask() -> np.ndarray:
    mask = np.zeros((restype_num + 1, atom_type_num), dtype=np.int32)
    for r, res in enumerate(_RESNAMES_3):
        mask[r, [atom_order[a] for a in residue_atoms[res]]] = 1
    return _frozen(mask)


STANDARD_ATOM_MASK = _make_standard_atom_mask()  # [21, 37] int32


def chi_angle_atom(atom_index: int) -> np.ndarray:
    """One-hot ``[21, 37, 4]``: the ``atom_index``-th atom (0..3) of each chi angle.

    As in AlphaFold, an undefined chi angle of a standard residue selects the last atom
    type (OXT) rather than nothing; UNK rows are all zero.
    """
    onehot = np.zeros((restype_num + 1, atom_type_num, 4), dtype=np.float64)
    for r, res in enumerate(_RESNAMES_3):
        chis = chi_angles_atoms[res]
        for k in range(4):
            atom = atom_order[chis[k][atom_index]] if k < len(chis) else atom_type_num - 1
            onehot[r, atom, k] = 1.0
    return onehot


chi_atom_1_one_hot = _frozen(chi_angle_atom(1))
chi_atom_2_one_hot = _frozen(chi_angle_atom(2))


def _make_chi_atom_indices(with_unknown: bool) -> np.ndarray:
    # Undefined chi angles point at atom 0 (N); callers mask them with chi_angles_mask.
    rows = restype_num + (1 if with_unknown else 0)
    idx = np.zeros((rows, 4, 4), dtype=np.int64)
    for r, res in enumerate(_RESNAMES_3):
        for k, chi in enumerate(chi_angles_atoms[res]):
            idx[r, k] = [atom_order[a] for a in chi]
    return _frozen(idx)


chi_angles_atom_indices = _make_chi_atom_indices(with_unknown=False)  # [20, 4, 4]
chi_atom_indices = _make_chi_atom_indices(with_unknown=True)  # [21, 4, 4]
# Per-restype chi mask including UNK (all zero) [21, 4] float32.
restype_chi_angles_mask = _frozen(np.array(chi_angles_mask + ((0.0,) * 4,), dtype=np.float32))
restype_chi_pi_periodic = _frozen(np.array(chi_pi_periodic, dtype=np.float32))  # [21, 4]


def _make_chi_groups_for_atom() -> Mapping:
    groups: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for res, chis in chi_angles_atoms.items():
        for k, chi in enumerate(chis):
            for i, atom in enumerate(chi):
                groups.setdefault((res, atom), []).append((k, i))
    return _ro({key: tuple(v) for key, v in groups.items()})


# (resname, atom name) -> ((chi index, position of the atom within that chi), ...)
chi_groups_for_atom = _make_chi_groups_for_atom()


def _frame_4x4(ex: np.ndarray, ey: np.ndarray, origin: np.ndarray) -> np.ndarray:
    # Gram-Schmidt on (ex, ey) gives a right-handed frame with x along ex and ey in the
    # xy-plane; float64 here, rounded to float32 only when stored.
    x = ex / np.linalg.norm(ex)
    y = ey - np.dot(ey, x) * x
    y = y / np.linalg.norm(y)
    z = np.cross(x, y)
    frame = np.eye(4)
    frame[:3, 0], frame[:3, 1], frame[:3, 2], frame[:3, 3] = x, y, z, origin
    return frame


def _make_rigid_group_tables() -> dict[str, np.ndarray]:
    atom37_to_group = np.zeros((21, 37), dtype=np.int64)
    atom37_mask = np.zeros((21, 37), dtype=np.float32)
    atom37_pos = np.zeros((21, 37, 3), dtype=np.float32)
    atom14_to_group = np.zeros((21, 14), dtype=np.int64)
    atom14_mask = np.zeros((21, 14), dtype=np.float32)
    atom14_pos = np.zeros((21, 14, 3), dtype=np.float32)
    default_frame = np.zeros((21, 8, 4, 4), dtype=np.float32)

    for r, res in enumerate(_RESNAMES_3):
        slots14 = restype_name_to_atom14_names[res]
        pos = {}
        for atom, group, xyz in rigid_group_atom_positions[res]:
            a37, a14 = atom_order[atom], slots14.index(atom)
            atom37_to_group[r, a37] = group
            atom37_mask[r, a37] = 1.0
            atom37_pos[r, a37] = xyz
            atom14_to_group[r, a14] = group
            atom14_mask[r, a14] = 1.0
            atom14_pos[r, a14] = xyz
            pos[atom] = np.array(xyz)

        # Frames map each group's local coordinates into its parent's: groups 1..4 into
        # the backbone frame, chi2..chi4 into the preceding chi frame. Group 1 (pre-omega)
        # is an identity placeholder; UNK keeps all-zero frames.
        default_frame[r, 0] = np.eye(4)
        default_frame[r, 1] = np.eye(4)
        default_frame[r, 2] = _frame_4x4(pos["N"] - pos["CA"], np.array([1.0, 0.0, 0.0]), pos["N"])
        default_frame[r, 3] = _frame_4x4(pos["C"] - pos["CA"], pos["CA"] - pos["N"], pos["C"])
        chis = chi_angles_atoms[res]
        if chis:
            a, b, c = (pos[name] for name in chis[0][:3])
            default_frame[r, 4] = _frame_4x4(c - b, a - b, c)
        for k in range(1, len(chis)):
            # The axis of chi k+1 starts at the previous chi frame's origin, so the axis
            # end atom alone fixes the direction; (-1, 0, 0) is the previous axis start.
            end = pos[chis[k][2]]
            default_frame[r, 4 + k] = _frame_4x4(end, np.array([-1.0, 0.0, 0.0]), end)

    return {
        "atom37_to_group": atom37_to_group,
        "atom37_mask": atom37_mask,
        "atom37_pos": atom37_pos,
        "atom14_to_group": atom14_to_group,
        "atom14_mask": atom14_mask,
        "atom14_pos": atom14_pos,
        "default_frame": default_frame,
    }


_rg = {k: _frozen(v) for k, v in _make_rigid_group_tables().items()}
restype_atom37_to_rigid_group = _rg["atom37_to_group"]  # [21, 37] int64
restype_atom37_mask = _rg["atom37_mask"]  # [21, 37] float32
restype_atom37_rigid_group_positions = _rg["atom37_pos"]  # [21, 37, 3] float32
restype_atom14_to_rigid_group = _rg["atom14_to_group"]  # [21, 14] int64
restype_atom14_mask = _rg["atom14_mask"]  # [21, 14] float32
restype_atom14_rigid_group_positions = _rg["atom14_pos"]  # [21, 14, 3] float32
restype_rigid_group_default_frame = _rg["default_frame"]  # [21, 8, 4, 4] float32
del _rg


def _make_atom14_index_tables() -> tuple[np.ndarray, np.ndarray]:
    # Missing atoms map to index 0; every consumer multiplies by an existence mask.
    to37 = np.zeros((21, 14), dtype=np.int64)
    to14 = np.zeros((21, 37), dtype=np.int64)
    for r, res in enumerate(_RESNAMES_3):
        for i, name in enumerate(restype_name_to_atom14_names[res]):
            if name:
                to37[r, i] = atom_order[name]
                to14[r, atom_order[name]] = i
    return _frozen(to37), _frozen(to14)


restype_atom14_to_atom37, restype_atom37_to_atom14 = _make_atom14_index_tables()


def _make_ambiguity_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ambiguous = np.zeros((21, 14), dtype=np.float32)
    swap_idx = np.tile(np.arange(14, dtype=np.int64), (21, 1))
    for res, swaps in residue_atom_renaming_swaps.items():
        r = resname_to_idx[res]
        slots = restype_name_to_atom14_names[res]
        for a1, a2 in swaps.items():
            i1, i2 = slots.index(a1), slots.index(a2)
            ambiguous[r, [i1, i2]] = 1.0
            swap_idx[r, i1], swap_idx[r, i2] = i2, i1
    # Permutation matrices: renamed[b] = sum_a original[a] * M[a, b]. Each swap is an
    # involution, so M is symmetric.
    renaming = np.zeros((21, 14, 14), dtype=np.float32)
    renaming[np.arange(21)[:, None], np.arange(14)[None, :], swap_idx] = 1.0
    return _frozen(ambiguous), _frozen(swap_idx), _frozen(renaming)


(
    restype_atom14_ambiguous_atoms,  # [21, 14] float32
    restype_atom14_ambiguous_atoms_swap_idx,  # [21, 14] int64
    restype_atom14_renaming_matrices,  # [21, 14, 14] float32
) = _make_ambiguity_tables()


def _make_rigidgroup_base_tables() -> tuple[np.ndarray, ...]:
    # The three atoms that fix each rigid group's frame, ordered (point on the negative
    # x-axis, origin, point in the xy-plane). The backbone uses (C, CA, N) and is mirrored
    # afterwards (x and z flipped) to match AlphaFold's older backbone convention.
    base = np.zeros((21, 8, 3), dtype=np.int64)
    base[:, 0] = [atom_order[a] for a in ("C", "CA", "N")]
    base[:, 3] = [atom_order[a] for a in ("CA", "C", "O")]
    exists = np.zeros((21, 8), dtype=np.float32)
    exists[:, 0] = 1.0
    exists[:, 3] = 1.0
    for r, res in enumerate(_RESNAMES_3):
        for k, chi in enumerate(chi_angles_atoms[res]):
            base[r, 4 + k] = [atom_order[a] for a in chi[1:]]
            exists[r, 4 + k] = 1.0
    # A symmetric side chain's last chi frame is ambiguous: its alternative is the same
    # frame rotated by pi about x.
    ambiguous = np.zeros((21, 8), dtype=np.float32)
    ambiguity_rot = np.tile(np.eye(3, dtype=np.float32), (21, 8, 1, 1))
    for res in residue_atom_renaming_swaps:
        r = resname_to_idx[res]
        g = 3 + len(chi_angles_atoms[res])
        ambiguous[r, g] = 1.0
        ambiguity_rot[r, g, 1, 1] = -1.0
        ambiguity_rot[r, g, 2, 2] = -1.0
    return tuple(_frozen(a) for a in (base, exists, ambiguous, ambiguity_rot))


(
    restype_rigidgroup_base_atom37_idx,  # [21, 8, 3] int64
    restype_rigidgroup_mask,  # [21, 8] float32
    restype_rigidgroup_is_ambiguous,  # [21, 8] float32
    restype_rigidgroup_ambiguity_rot,  # [21, 8, 3, 3] float32
) = _make_rigidgroup_base_tables()


@functools.cache
def make_atom14_dists_bounds(
    overlap_tolerance: float = 1.5, bond_length_tolerance_factor: float = 15
) -> Mapping[str, np.ndarray]:
    """Intra-residue distance bounds ``[21, 14, 14]`` for structural-violation checks.

    Non-bonded pairs get a lower bound of the summed van der Waals radii minus
    ``overlap_tolerance`` (upper 1e10); bonded and angle-spanning (virtual) pairs get
    ``length -/+ factor * stddev``. Keys: ``lower_bound``, ``upper_bound``, ``stddev``.
    """
    lower = np.zeros((21, 14, 14), dtype=np.float32)
    upper = np.zeros((21, 14, 14), dtype=np.float32)
    stddev = np.zeros((21, 14, 14), dtype=np.float32)
    bonds, virtual_bonds, _ = load_stereo_chemical_props()
    for r, res in enumerate(_RESNAMES_3):
        slots = restype_name_to_atom14_names[res]
        present = [(i, n) for i, n in enumerate(slots) if n]
        for i, n1 in present:
            for j, n2 in present:
                if i != j:
                    lower[r, i, j] = (
                        van_der_waals_radius[n1[0]]
                        + van_der_waals_radius[n2[0]]
                        - overlap_tolerance
                    )
                    upper[r, i, j] = 1e10
        for b in bonds[res] + virtual_bonds[res]:
            i, j = slots.index(b.atom1_name), slots.index(b.atom2_name)
            lo = b.length - bond_length_tolerance_factor * b.stddev
            hi = b.length + bond_length_tolerance_factor * b.stddev
            lower[r, i, j] = lower[r, j, i] = lo
            upper[r, i, j] = upper[r, j, i] = hi
            stddev[r, i, j] = stddev[r, j, i] = b.stddev
    return _ro(
        {"lower_bound": _frozen(lower), "upper_bound": _frozen(upper), "stddev": _frozen(stddev)}
    )
