"""All-atom geometry in torch: torsion angles <-> rigid-group frames <-> atom coordinates.

Semantics follow AlphaFold v2.3 (`alphafold.model.all_atom`) and the OpenFold data
transforms used by the MLPerf reference. Every function accepts arbitrary leading batch
dims (`*`), has static output shapes, avoids host synchronisation (no `.item()`, no boolean
indexing, no `one_hot` range checks), and computes in the dtype of its real-valued inputs.

Lookup tables are moved to the device once and cached. The first call for a given device
and dtype must therefore happen outside CUDA-graph capture (warm-up).
"""

from __future__ import annotations

import numpy as np
import torch

from scalefold.geometry import residue_constants as rc
from scalefold.geometry.rigid import Rigid, rot_vec_mul

__all__ = [
    "atom14_to_atom37",
    "atom37_to_atom14",
    "atom37_to_frames",
    "atom37_to_torsion_angles",
    "backbone_frames",
    "frames_to_atom14_positions",
    "get_backbone_frames",
    "get_chi_angles",
    "ground_truth_features",
    "make_atom14_masks",
    "make_atom14_positions",
    "pseudo_beta",
    "torsion_angles_to_frames",
]

# Torsion order: pre-omega, phi, psi, chi1..chi4. psi is measured through O, which sits
# opposite the next residue's N, hence its sign flip.
_TORSION_SIGN = (1.0, 1.0, -1.0, 1.0, 1.0, 1.0, 1.0)
# The backbone frame built from (C, CA, N) is mirrored in x and z to match AlphaFold's
# backbone convention (x along CA->C, N in the xy-plane with positive y).
_GROUP_COLUMN_SIGN = ((-1.0, 1.0, -1.0),) + ((1.0, 1.0, 1.0),) * 7


_RESIDUE_TABLES = (
    "STANDARD_ATOM_MASK",
    "chi_atom_indices",
    "restype_atom14_ambiguous_atoms",
    "restype_atom14_ambiguous_atoms_swap_idx",
    "restype_atom14_mask",
    "restype_atom14_rigid_group_positions",
    "restype_atom14_to_atom37",
    "restype_atom14_to_rigid_group",
    "restype_atom37_to_atom14",
    "restype_chi_angles_mask",
    "restype_chi_pi_periodic",
    "restype_rigid_group_default_frame",
    "restype_rigidgroup_base_atom37_idx",
    "restype_rigidgroup_is_ambiguous",
    "restype_rigidgroup_mask",
)

# Host copies made once at import, so that nothing below converts numpy arrays while
# torch.compile traces (Dynamo's numpy handling would flip the read-only flag of the
# residue_constants arrays).
_HOST_TABLES: dict[str, torch.Tensor] = {
    **{name: torch.from_numpy(np.array(getattr(rc, name))) for name in _RESIDUE_TABLES},
    "ambiguity_column_sign": torch.from_numpy(
        np.diagonal(rc.restype_rigidgroup_ambiguity_rot, axis1=-2, axis2=-1).copy()
    ),
    "torsion_sign": torch.tensor(_TORSION_SIGN, dtype=torch.float64),
    "group_column_sign": torch.tensor(_GROUP_COLUMN_SIGN, dtype=torch.float64),
    "group_ids": torch.arange(8),
}
_DEVICE_TABLES: dict[tuple[str, torch.device, torch.dtype | None], torch.Tensor] = {}


def _const(name: str, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A lookup table on `device` (in `dtype`, if given), cached after the first eager call."""
    key = (name, device, dtype)
    cached = _DEVICE_TABLES.get(key)
    if cached is not None:
        return cached
    host = _HOST_TABLES[name]
    if torch.compiler.is_compiling():
        # Inside a compiled graph the copy becomes part of the graph; warm up eagerly to
        # have it as a constant instead.
        return host.to(device=device, dtype=dtype or host.dtype)
    # Created outside inference mode so a table first touched under torch.inference_mode()
    # can still be saved for backward later.
    with torch.inference_mode(False), torch.no_grad():
        table = host.to(device=device, dtype=dtype or host.dtype, copy=True)
    _DEVICE_TABLES[key] = table
    return table


def warm_tables(device: torch.device,
                dtypes: tuple[torch.dtype | None, ...] = (None, torch.float32, torch.bfloat16,
                                                         torch.float16)) -> None:
    """Put every lookup table on `device` in each of `dtypes` now, eagerly. Code compiled
    before its first eager call would otherwise trace the tables' copies into its graph and
    guard on their absence from the cache: the first eager use elsewhere (the loss, an
    uncompiled copy of the model) then forces a recompile."""
    for name in _HOST_TABLES:
        for dtype in dtypes:
            _const(name, device, dtype)


def _lookup(name: str, aatype: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Per-residue rows of a [21, ...] residue table: [*, N, ...]."""
    return _const(name, aatype.device, dtype)[aatype]


def _gather_atoms(x: torch.Tensor, idx: torch.Tensor, atom_dim: int) -> torch.Tensor:
    """x gathered along `atom_dim` with idx [*, N, K] (trailing dims of x kept)."""
    trailing = x.dim() - (atom_dim % x.dim()) - 1
    return torch.take_along_dim(x, idx.reshape(idx.shape + (1,) * trailing), dim=atom_dim)


# --------------------------------------------------------------------------------------
# Torsions -> frames -> atoms (structure module).
# --------------------------------------------------------------------------------------


def torsion_angles_to_frames(
    backbone: Rigid, angles_sin_cos: torch.Tensor, aatype: torch.Tensor
) -> Rigid:
    """Global frames of the 8 rigid groups (AF2 suppl. Alg. 24, lines 2-10).

    backbone: Rigid [*, N] (backbone to global); angles_sin_cos: [*, N, 7, 2] as (sin, cos)
    of pre-omega, phi, psi, chi1..4; aatype: [*, N] long. Returns Rigid [*, N, 8].
    """
    dtype = angles_sin_cos.dtype
    # Default frames map each group into its parent frame: [*, N, 8, 4, 4].
    default = Rigid.from_tensor_4x4(_lookup("restype_rigid_group_default_frame", aatype, dtype))

    sin, cos = angles_sin_cos[..., 0], angles_sin_cos[..., 1]  # [*, N, 7]
    # The backbone group itself is not rotated.
    sin = torch.cat((torch.zeros_like(sin[..., :1]), sin), dim=-1)  # [*, N, 8]
    cos = torch.cat((torch.ones_like(cos[..., :1]), cos), dim=-1)  # [*, N, 8]

    # default.rot @ R_x(angle): R_x leaves column 0 alone and mixes columns 1 and 2.
    rot = default.rot
    col0, col1, col2 = rot[..., 0], rot[..., 1], rot[..., 2]  # [*, N, 8, 3]
    s, c = sin[..., None], cos[..., None]
    rot = torch.stack((col0, col1 * c + col2 * s, col2 * c - col1 * s), dim=-1)
    to_parent = Rigid(rot, default.trans)  # [*, N, 8]

    # chi2..chi4 frames hang off the previous chi frame, not the backbone.
    chi1 = to_parent[..., 4]
    chi2 = chi1.compose(to_parent[..., 5])
    chi3 = chi2.compose(to_parent[..., 6])
    chi4 = chi3.compose(to_parent[..., 7])
    to_backbone = Rigid.cat(
        [to_parent[..., :5], chi2.unsqueeze(-1), chi3.unsqueeze(-1), chi4.unsqueeze(-1)], dim=-1
    )
    return backbone.unsqueeze(-1).compose(to_backbone)


def frames_to_atom14_positions(frames: Rigid, aatype: torch.Tensor) -> torch.Tensor:
    """Atom positions [*, N, 14, 3] from group frames [*, N, 8] (AF2 suppl. Alg. 24, l. 11).

    Each atom's idealised local position is placed by its group's frame; absent atoms are
    zero. Frames are selected with a one-hot product (as AlphaFold does) rather than a
    gather, which keeps the backward pass free of atomic scatter-adds.
    """
    dtype = frames.dtype
    group = _lookup("restype_atom14_to_rigid_group", aatype)  # [*, N, 14]
    onehot = (group[..., None] == _const("group_ids", aatype.device)).to(dtype)  # [*, N, 14, 8]
    rot = (frames.rot[..., None, :, :, :] * onehot[..., None, None]).sum(dim=-3)  # [*, N, 14, 3, 3]
    trans = (frames.trans[..., None, :, :] * onehot[..., None]).sum(dim=-2)  # [*, N, 14, 3]
    local = _lookup("restype_atom14_rigid_group_positions", aatype, dtype)  # [*, N, 14, 3]
    mask = _lookup("restype_atom14_mask", aatype, dtype)  # [*, N, 14]
    return (rot_vec_mul(rot, local) + trans) * mask[..., None]


# --------------------------------------------------------------------------------------
# atom14 <-> atom37.
# --------------------------------------------------------------------------------------


def make_atom14_masks(aatype: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-residue atom layout maps for aatype [*, N].

    Returns atom14_atom_exists [*, N, 14] (float32), residx_atom14_to_atom37 [*, N, 14]
    (long), residx_atom37_to_atom14 [*, N, 37] (long), atom37_atom_exists [*, N, 37]
    (float32). Absent atoms map to index 0 and must be masked by the caller.
    """
    return {
        "atom14_atom_exists": _lookup("restype_atom14_mask", aatype, torch.float32),
        "residx_atom14_to_atom37": _lookup("restype_atom14_to_atom37", aatype),
        "residx_atom37_to_atom14": _lookup("restype_atom37_to_atom14", aatype),
        "atom37_atom_exists": _lookup("STANDARD_ATOM_MASK", aatype, torch.float32),
    }


def atom14_to_atom37(
    atom14: torch.Tensor,
    residx_atom37_to_atom14: torch.Tensor,
    atom37_atom_exists: torch.Tensor,
) -> torch.Tensor:
    """atom14 data [*, N, 14, ...] -> atom37 [*, N, 37, ...], zero where the atom is absent.

    residx_atom37_to_atom14 and atom37_atom_exists are [*, N, 37]; batch dims broadcast.
    """
    atom_dim = residx_atom37_to_atom14.dim() - 1
    out = _gather_atoms(atom14, residx_atom37_to_atom14, atom_dim)
    trailing = out.dim() - atom37_atom_exists.dim()
    return out * atom37_atom_exists.reshape(atom37_atom_exists.shape + (1,) * trailing).to(
        out.dtype
    )


def atom37_to_atom14(
    atom37: torch.Tensor,
    residx_atom14_to_atom37: torch.Tensor,
    atom14_atom_exists: torch.Tensor,
) -> torch.Tensor:
    """atom37 data [*, N, 37, ...] -> atom14 [*, N, 14, ...], zero where the atom is absent."""
    atom_dim = residx_atom14_to_atom37.dim() - 1
    out = _gather_atoms(atom37, residx_atom14_to_atom37, atom_dim)
    trailing = out.dim() - atom14_atom_exists.dim()
    return out * atom14_atom_exists.reshape(atom14_atom_exists.shape + (1,) * trailing).to(
        out.dtype
    )


# --------------------------------------------------------------------------------------
# Ground truth from atom37 coordinates (data pipeline, losses).
# --------------------------------------------------------------------------------------


def atom37_to_torsion_angles(
    aatype: torch.Tensor,
    all_atom_positions: torch.Tensor,
    all_atom_mask: torch.Tensor,
    placeholder_for_undefined: bool = False,
) -> dict[str, torch.Tensor]:
    """The 7 torsion angles of each residue as (sin, cos) (AF `atom37_to_torsion_angles`).

    aatype [*, N], all_atom_positions [*, N, 37, 3], all_atom_mask [*, N, 37]. Returns
    torsion_angles_sin_cos and alt_torsion_angles_sin_cos [*, N, 7, 2] (alt: pi-periodic
    chi angles shifted by pi) and torsion_angles_mask [*, N, 7]. With
    `placeholder_for_undefined`, masked torsions read (sin, cos) = (1, 0) instead of
    whatever the missing atoms gave (AlphaFold's model leaves it off by default).
    """
    pos = all_atom_positions
    dtype = pos.dtype
    mask = all_atom_mask.to(dtype)
    aatype = aatype.clamp(max=rc.restype_num)

    # Previous residue's atoms; the first residue sees zeros (and a zero mask).
    prev_pos = torch.cat((torch.zeros_like(pos[..., :1, :, :]), pos[..., :-1, :, :]), dim=-3)
    prev_mask = torch.cat((torch.zeros_like(mask[..., :1, :]), mask[..., :-1, :]), dim=-2)

    # Atom quadruples [*, N, 4, 3]; atom37 order starts N, CA, C, CB, O.
    pre_omega_pos = torch.cat((prev_pos[..., 1:3, :], pos[..., 0:2, :]), dim=-2)  # CA', C', N, CA
    phi_pos = torch.cat((prev_pos[..., 2:3, :], pos[..., 0:3, :]), dim=-2)  # C', N, CA, C
    psi_pos = torch.cat((pos[..., 0:3, :], pos[..., 4:5, :]), dim=-2)  # N, CA, C, O
    pre_omega_mask = prev_mask[..., 1:3].prod(dim=-1) * mask[..., 0:2].prod(dim=-1)  # [*, N]
    phi_mask = prev_mask[..., 2] * mask[..., 0:3].prod(dim=-1)
    psi_mask = mask[..., 0:3].prod(dim=-1) * mask[..., 4]

    chi_idx = _lookup("chi_atom_indices", aatype).flatten(-2)  # [*, N, 16]
    chi_pos = _gather_atoms(pos, chi_idx, -2).unflatten(-2, (4, 4))  # [*, N, 4, 4, 3]
    chi_atoms_present = _gather_atoms(mask, chi_idx, -1).unflatten(-1, (4, 4)).prod(dim=-1)
    chi_mask = _lookup("restype_chi_angles_mask", aatype, dtype) * chi_atoms_present  # [*, N, 4]

    quads = torch.cat(
        (
            pre_omega_pos[..., None, :, :],
            phi_pos[..., None, :, :],
            psi_pos[..., None, :, :],
            chi_pos,
        ),
        dim=-3,
    )  # [*, N, 7, 4, 3]
    torsion_mask = torch.cat(
        (pre_omega_mask[..., None], phi_mask[..., None], psi_mask[..., None], chi_mask), dim=-1
    )  # [*, N, 7]

    # Frame with atom 2 at the origin, atom 1 on the negative x-axis and atom 0 in the
    # xy-plane: atom 3's (z, y) are then sin and cos of the dihedral, up to scale.
    frames = Rigid.from_3_points(quads[..., 1, :], quads[..., 2, :], quads[..., 0, :])
    fourth = frames.invert().apply(quads[..., 3, :])  # [*, N, 7, 3]
    sin_cos = torch.stack((fourth[..., 2], fourth[..., 1]), dim=-1)  # [*, N, 7, 2]
    sin_cos = sin_cos / torch.sqrt((sin_cos * sin_cos).sum(dim=-1, keepdim=True) + 1e-8)
    sin_cos = sin_cos * _const("torsion_sign", aatype.device, dtype)[:, None]

    periodic = _lookup("restype_chi_pi_periodic", aatype, dtype)  # [*, N, 4]
    mirror = torch.cat((torch.ones_like(periodic[..., :3]), 1.0 - 2.0 * periodic), dim=-1)
    alt_sin_cos = sin_cos * mirror[..., None]

    if placeholder_for_undefined:
        m = torsion_mask[..., None]
        placeholder = torch.stack(
            (torch.ones_like(torsion_mask), torch.zeros_like(torsion_mask)), dim=-1
        )
        sin_cos = sin_cos * m + placeholder * (1 - m)
        alt_sin_cos = alt_sin_cos * m + placeholder * (1 - m)

    return {
        "torsion_angles_sin_cos": sin_cos,
        "alt_torsion_angles_sin_cos": alt_sin_cos,
        "torsion_angles_mask": torsion_mask,
    }


def atom37_to_frames(
    aatype: torch.Tensor,
    all_atom_positions: torch.Tensor,
    all_atom_mask: torch.Tensor,
    eps: float = 1e-8,
) -> dict[str, torch.Tensor]:
    """Ground-truth frames of the 8 rigid groups (AF `atom37_to_frames`), as 4x4 matrices.

    Returns rigidgroups_gt_frames and rigidgroups_alt_gt_frames [*, N, 8, 4, 4] (alt: the
    last chi frame of ASP/GLU/PHE/TYR rotated by pi about x), rigidgroups_gt_exists,
    rigidgroups_group_exists and rigidgroups_group_is_ambiguous [*, N, 8].
    """
    pos = all_atom_positions
    dtype = pos.dtype
    mask = all_atom_mask.to(dtype)

    base_idx = _lookup("restype_rigidgroup_base_atom37_idx", aatype).flatten(-2)  # [*, N, 24]
    base_pos = _gather_atoms(pos, base_idx, -2).unflatten(-2, (8, 3))  # [*, N, 8, 3, 3]
    frames = Rigid.from_3_points(base_pos[..., 0, :], base_pos[..., 1, :], base_pos[..., 2, :], eps)
    # Right-multiplying by a diagonal sign matrix flips whole columns (frame axes).
    column_sign = _const("group_column_sign", aatype.device, dtype)  # [8, 3]
    frames = Rigid(frames.rot * column_sign[:, None, :], frames.trans)

    group_exists = _lookup("restype_rigidgroup_mask", aatype, dtype)  # [*, N, 8]
    base_present = _gather_atoms(mask, base_idx, -1).unflatten(-1, (8, 3))  # [*, N, 8, 3]
    gt_exists = base_present.amin(dim=-1) * group_exists

    alt_sign = _lookup("ambiguity_column_sign", aatype, dtype)  # [*, N, 8, 3]
    alt_frames = Rigid(frames.rot * alt_sign[..., None, :], frames.trans)

    return {
        "rigidgroups_gt_frames": frames.to_tensor_4x4(),
        "rigidgroups_gt_exists": gt_exists,
        "rigidgroups_group_exists": group_exists,
        "rigidgroups_group_is_ambiguous": _lookup("restype_rigidgroup_is_ambiguous", aatype, dtype),
        "rigidgroups_alt_gt_frames": alt_frames.to_tensor_4x4(),
    }


def make_atom14_positions(
    aatype: torch.Tensor, all_atom_positions: torch.Tensor, all_atom_mask: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Ground truth in the atom14 layout (OpenFold `make_atom14_positions`).

    Returns the make_atom14_masks() maps plus atom14_gt_positions and
    atom14_alt_gt_positions [*, N, 14, 3], atom14_gt_exists, atom14_alt_gt_exists and
    atom14_atom_is_ambiguous [*, N, 14]. The alternative ground truth swaps the names of
    the symmetric side-chain atoms of ASP, GLU, PHE and TYR.
    """
    pos = all_atom_positions
    dtype = pos.dtype
    out = make_atom14_masks(aatype)
    to37 = out["residx_atom14_to_atom37"]  # [*, N, 14]
    gt_exists = out["atom14_atom_exists"].to(dtype) * _gather_atoms(
        all_atom_mask.to(dtype), to37, -1
    )
    gt_pos = gt_exists[..., None] * _gather_atoms(pos, to37, -2)  # [*, N, 14, 3]

    # Each renaming is an involutive permutation, so a gather with the swap index equals
    # AlphaFold's product with the renaming matrix, exactly.
    swap = _lookup("restype_atom14_ambiguous_atoms_swap_idx", aatype)  # [*, N, 14]
    out.update(
        atom14_gt_exists=gt_exists,
        atom14_gt_positions=gt_pos,
        atom14_alt_gt_positions=_gather_atoms(gt_pos, swap, -2),
        atom14_alt_gt_exists=_gather_atoms(gt_exists, swap, -1),
        atom14_atom_is_ambiguous=_lookup("restype_atom14_ambiguous_atoms", aatype, dtype),
    )
    return out


def pseudo_beta(
    aatype: torch.Tensor,
    all_atom_positions: torch.Tensor,
    all_atom_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """CB position [*, N, 3] (CA for glycine) and its mask [*, N] (None without a mask)."""
    is_gly = aatype == rc.restype_order["G"]
    ca, cb = rc.atom_order["CA"], rc.atom_order["CB"]
    positions = torch.where(
        is_gly[..., None], all_atom_positions[..., ca, :], all_atom_positions[..., cb, :]
    )
    if all_atom_mask is None:
        return positions, None
    return positions, torch.where(is_gly, all_atom_mask[..., ca], all_atom_mask[..., cb])


def backbone_frames(
    aatype: torch.Tensor,
    all_atom_positions: torch.Tensor,
    all_atom_mask: torch.Tensor,
    eps: float = 1e-8,
) -> dict[str, torch.Tensor]:
    """Ground-truth backbone frames only: backbone_rigid_tensor [*, N, 4, 4] and
    backbone_rigid_mask [*, N]; identical to group 0 of atom37_to_frames()."""
    del aatype  # every residue type shares the (C, CA, N) backbone definition
    pos = all_atom_positions
    c, ca, n = (rc.atom_order[a] for a in ("C", "CA", "N"))
    frame = Rigid.from_3_points(pos[..., c, :], pos[..., ca, :], pos[..., n, :], eps)
    column_sign = _const("group_column_sign", pos.device, pos.dtype)[0]  # [3]
    frame = Rigid(frame.rot * column_sign, frame.trans)
    mask = all_atom_mask.to(pos.dtype)
    present = torch.stack((mask[..., c], mask[..., ca], mask[..., n]), dim=-1).amin(dim=-1)
    return {"backbone_rigid_tensor": frame.to_tensor_4x4(), "backbone_rigid_mask": present}


def get_backbone_frames(
    rigidgroups_gt_frames: torch.Tensor, rigidgroups_gt_exists: torch.Tensor
) -> dict[str, torch.Tensor]:
    """backbone_rigid_tensor / backbone_rigid_mask sliced from atom37_to_frames() output
    (OpenFold `get_backbone_frames`)."""
    return {
        "backbone_rigid_tensor": rigidgroups_gt_frames[..., 0, :, :],
        "backbone_rigid_mask": rigidgroups_gt_exists[..., 0],
    }


def get_chi_angles(
    aatype: torch.Tensor, all_atom_positions: torch.Tensor, all_atom_mask: torch.Tensor
) -> dict[str, torch.Tensor]:
    """chi_angles_sin_cos [*, N, 4, 2] and chi_mask [*, N, 4] (OpenFold `get_chi_angles`)."""
    torsions = atom37_to_torsion_angles(aatype, all_atom_positions, all_atom_mask)
    return {
        "chi_angles_sin_cos": torsions["torsion_angles_sin_cos"][..., 3:, :],
        "chi_mask": torsions["torsion_angles_mask"][..., 3:],
    }


def ground_truth_features(
    aatype: torch.Tensor, all_atom_positions: torch.Tensor, all_atom_mask: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Every structural ground-truth feature of docs/CONTRACTS.md from atom37 coordinates.

    aatype [*, N], all_atom_positions [*, N, 37, 3], all_atom_mask [*, N, 37]. Keys: the
    make_atom14_positions() keys, the atom37_to_frames() keys, backbone_rigid_tensor,
    backbone_rigid_mask, chi_angles_sin_cos, chi_mask, pseudo_beta, pseudo_beta_mask.
    The reference computes these in float32; pass float64 for more robust chi angles.
    """
    feats = make_atom14_positions(aatype, all_atom_positions, all_atom_mask)
    feats.update(atom37_to_frames(aatype, all_atom_positions, all_atom_mask))
    feats.update(
        get_backbone_frames(feats["rigidgroups_gt_frames"], feats["rigidgroups_gt_exists"])
    )
    feats.update(get_chi_angles(aatype, all_atom_positions, all_atom_mask))
    feats["pseudo_beta"], feats["pseudo_beta_mask"] = pseudo_beta(
        aatype, all_atom_positions, all_atom_mask
    )
    return feats
