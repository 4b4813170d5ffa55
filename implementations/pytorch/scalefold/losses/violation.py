"""Structural-violation loss (AF2 suppl. 1.9.11, eqs. 44-47); weight 0 in the MLPerf run.

Three parts, all flat-bottomed (zero inside a tolerance):
- peptide-bond geometry between consecutive residues: C-N length, CA-C-N and C-N-CA
  angles, tolerance 12 standard deviations of the PDB statistics;
- clashes between atoms of different residues: closer than the sum of van der Waals
  radii minus 1.5 Å (the peptide C-N bond and CYS SG-SG pairs excepted);
- within-residue bounds: bonded and angle-spanning pairs within 12 stddev of the
  literature length, other pairs not closer than the van der Waals sum minus 1.5 Å.

Two quirks of AlphaFold are kept because the reference keeps them: the CA-C-N angle term
uses the C-N *bond length* standard deviation as its tolerance unit, and the SG-SG
exception applies to atom14 slot 5 of any two residues, not only cysteines.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from scalefold.geometry import residue_constants as rc


@dataclass(frozen=True)
class ViolationTables:
    """Constant lookup tables, built once and carried as module buffers."""

    atom37_radius: torch.Tensor  # [37] van der Waals radius by atom37 slot
    lower_bound: torch.Tensor  # [21, 14, 14] within-residue lower distance bounds
    upper_bound: torch.Tensor  # [21, 14, 14] within-residue upper distance bounds


def make_violation_tables(
    violation_tolerance_factor: float = 12.0,
    clash_overlap_tolerance: float = 1.5,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> ViolationTables:
    # The element is the first letter of the atom name for every protein heavy atom.
    radius = [rc.van_der_waals_radius[name[0]] for name in rc.atom_types]
    bounds = rc.make_atom14_dists_bounds(
        overlap_tolerance=clash_overlap_tolerance,
        bond_length_tolerance_factor=violation_tolerance_factor,
    )
    return ViolationTables(
        atom37_radius=torch.tensor(radius, device=device, dtype=dtype),
        # np.array copies: the residue-constant arrays are read-only.
        lower_bound=torch.from_numpy(np.array(bounds["lower_bound"])).to(device, dtype),
        upper_bound=torch.from_numpy(np.array(bounds["upper_bound"])).to(device, dtype),
    )


def _sqrt_eps(x: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.sqrt(eps + x)


def between_residue_bond_loss(
    pred_atom_positions: torch.Tensor,
    pred_atom_mask: torch.Tensor,
    residue_index: torch.Tensor,
    aatype: torch.Tensor,
    tolerance_factor_soft: float = 12.0,
    tolerance_factor_hard: float = 12.0,
    eps: float = 1e-6,
) -> dict[str, torch.Tensor]:
    """Peptide-bond length and angle violations between residue i and i + 1.

    Args:
        pred_atom_positions: [*, N, 14 (or 37), 3]; slots 0, 1, 2 are N, CA, C.
        pred_atom_mask: [*, N, 14 (or 37)].
        residue_index: [*, N]; a pair counts only where the index steps by exactly 1.
        aatype: [*, N].

    Returns:
        c_n_loss_mean, ca_c_n_loss_mean, c_n_ca_loss_mean [*];
        per_residue_loss_sum, per_residue_violation_mask [*, N].
    """
    dtype = pred_atom_positions.dtype
    mask = pred_atom_mask.to(dtype)
    this_ca_pos = pred_atom_positions[..., :-1, 1, :]  # [*, N-1, 3]
    this_ca_mask = mask[..., :-1, 1]
    this_c_pos = pred_atom_positions[..., :-1, 2, :]
    this_c_mask = mask[..., :-1, 2]
    next_n_pos = pred_atom_positions[..., 1:, 0, :]
    next_n_mask = mask[..., 1:, 0]
    next_ca_pos = pred_atom_positions[..., 1:, 1, :]
    next_ca_mask = mask[..., 1:, 1]
    no_gap = ((residue_index[..., 1:] - residue_index[..., :-1]) == 1).to(dtype)  # [*, N-1]

    c_n_length = _sqrt_eps(torch.sum((this_c_pos - next_n_pos) ** 2, dim=-1), eps)
    # The bond to a proline nitrogen is slightly longer (ring closure).
    next_is_pro = (aatype[..., 1:] == rc.resname_to_idx["PRO"]).to(dtype)
    gt_length = (1.0 - next_is_pro) * rc.between_res_bond_length_c_n[
        0
    ] + next_is_pro * rc.between_res_bond_length_c_n[1]
    gt_stddev = (1.0 - next_is_pro) * rc.between_res_bond_length_stddev_c_n[
        0
    ] + next_is_pro * rc.between_res_bond_length_stddev_c_n[1]
    c_n_error = _sqrt_eps((c_n_length - gt_length) ** 2, eps)
    c_n_per_res = torch.relu(c_n_error - tolerance_factor_soft * gt_stddev)
    pair_mask = this_c_mask * next_n_mask * no_gap
    c_n_loss = torch.sum(pair_mask * c_n_per_res, dim=-1) / (torch.sum(pair_mask, dim=-1) + eps)
    c_n_violation = pair_mask * (c_n_error > tolerance_factor_hard * gt_stddev).to(dtype)

    ca_c_length = _sqrt_eps(torch.sum((this_ca_pos - this_c_pos) ** 2, dim=-1), eps)
    n_ca_length = _sqrt_eps(torch.sum((next_n_pos - next_ca_pos) ** 2, dim=-1), eps)
    c_ca_unit = (this_ca_pos - this_c_pos) / ca_c_length[..., None]
    c_n_unit = (next_n_pos - this_c_pos) / c_n_length[..., None]
    n_ca_unit = (next_ca_pos - next_n_pos) / n_ca_length[..., None]

    ca_c_n_cos = torch.sum(c_ca_unit * c_n_unit, dim=-1)
    gt_angle = rc.between_res_cos_angles_ca_c_n[0]
    angle_stddev = rc.between_res_bond_length_stddev_c_n[0]  # sic, see module docstring
    ca_c_n_error = _sqrt_eps((ca_c_n_cos - gt_angle) ** 2, eps)
    ca_c_n_per_res = torch.relu(ca_c_n_error - tolerance_factor_soft * angle_stddev)
    pair_mask = this_ca_mask * this_c_mask * next_n_mask * no_gap
    ca_c_n_loss = torch.sum(pair_mask * ca_c_n_per_res, dim=-1) / (
        torch.sum(pair_mask, dim=-1) + eps
    )
    ca_c_n_violation = pair_mask * (ca_c_n_error > tolerance_factor_hard * angle_stddev).to(dtype)

    c_n_ca_cos = torch.sum((-c_n_unit) * n_ca_unit, dim=-1)
    gt_angle, angle_stddev = rc.between_res_cos_angles_c_n_ca
    c_n_ca_error = _sqrt_eps((c_n_ca_cos - gt_angle) ** 2, eps)
    c_n_ca_per_res = torch.relu(c_n_ca_error - tolerance_factor_soft * angle_stddev)
    pair_mask = this_c_mask * next_n_mask * next_ca_mask * no_gap
    c_n_ca_loss = torch.sum(pair_mask * c_n_ca_per_res, dim=-1) / (
        torch.sum(pair_mask, dim=-1) + eps
    )
    c_n_ca_violation = pair_mask * (c_n_ca_error > tolerance_factor_hard * angle_stddev).to(dtype)

    # Each peptide-bond term is shared half-and-half by the two residues it joins.
    per_pair = c_n_per_res + ca_c_n_per_res + c_n_ca_per_res  # [*, N-1]
    per_residue_loss_sum = 0.5 * (F.pad(per_pair, (0, 1)) + F.pad(per_pair, (1, 0)))
    violation = torch.maximum(torch.maximum(c_n_violation, ca_c_n_violation), c_n_ca_violation)
    per_residue_violation = torch.maximum(F.pad(violation, (0, 1)), F.pad(violation, (1, 0)))
    return {
        "c_n_loss_mean": c_n_loss,
        "ca_c_n_loss_mean": ca_c_n_loss,
        "c_n_ca_loss_mean": c_n_ca_loss,
        "per_residue_loss_sum": per_residue_loss_sum,
        "per_residue_violation_mask": per_residue_violation,
    }


def between_residue_clash_loss(
    atom14_pred_positions: torch.Tensor,
    atom14_atom_exists: torch.Tensor,
    atom14_atom_radius: torch.Tensor,
    residue_index: torch.Tensor,
    overlap_tolerance_soft: float = 1.5,
    overlap_tolerance_hard: float = 1.5,
    eps: float = 1e-10,
) -> dict[str, torch.Tensor]:
    """Clashes between atoms of different residues.

    Args:
        atom14_pred_positions: [*, N, 14, 3]; atom14_atom_exists, atom14_atom_radius: [*, N, 14].
        residue_index: [*, N]; each unordered residue pair is counted once (i < j).

    Returns:
        mean_loss [*], per_atom_loss_sum [*, N, 14], per_atom_clash_mask [*, N, 14].
    """
    dtype = atom14_pred_positions.dtype
    exists = atom14_atom_exists.to(dtype)
    diff = (
        atom14_pred_positions[..., :, None, :, None, :]
        - atom14_pred_positions[..., None, :, None, :, :]
    )
    dists = torch.sqrt(eps + torch.sum(diff * diff, dim=-1))  # [*, N, N, 14, 14]

    res_i = residue_index[..., :, None, None, None]
    res_j = residue_index[..., None, :, None, None]
    dists_mask = exists[..., :, None, :, None] * exists[..., None, :, None, :]
    dists_mask = dists_mask * (res_i < res_j).to(dtype)

    # The peptide bond C(i)-N(i+1) is no clash.
    c_slot, n_slot = 2, 0
    slot = torch.arange(14, device=dists.device)
    c_one_hot = (slot == c_slot).to(dtype)
    n_one_hot = (slot == n_slot).to(dtype)
    neighbour = (res_i + 1 == res_j).to(dtype)  # [*, N, N, 1, 1]
    c_n_bond = neighbour * c_one_hot[:, None] * n_one_hot[None, :]
    dists_mask = dists_mask * (1.0 - c_n_bond)

    # Disulfide bridges are no clash.
    sg_slot = rc.restype_name_to_atom14_names["CYS"].index("SG")
    sg_one_hot = (slot == sg_slot).to(dtype)
    dists_mask = dists_mask * (1.0 - sg_one_hot[:, None] * sg_one_hot[None, :])

    lower = dists_mask * (
        atom14_atom_radius[..., :, None, :, None] + atom14_atom_radius[..., None, :, None, :]
    )
    low_error = dists_mask * torch.relu(lower - overlap_tolerance_soft - dists)
    mean_loss = torch.sum(low_error, dim=(-4, -3, -2, -1)) / (
        1e-6 + torch.sum(dists_mask, dim=(-4, -3, -2, -1))
    )
    per_atom_loss_sum = torch.sum(low_error, dim=(-4, -2)) + torch.sum(low_error, dim=(-3, -1))

    clash = dists_mask * (dists < lower - overlap_tolerance_hard).to(dtype)
    per_atom_clash = torch.maximum(torch.amax(clash, dim=(-4, -2)), torch.amax(clash, dim=(-3, -1)))
    return {
        "mean_loss": mean_loss,
        "per_atom_loss_sum": per_atom_loss_sum,
        "per_atom_clash_mask": per_atom_clash,
    }


def within_residue_violations(
    atom14_pred_positions: torch.Tensor,
    atom14_atom_exists: torch.Tensor,
    atom14_dists_lower_bound: torch.Tensor,
    atom14_dists_upper_bound: torch.Tensor,
    tighten_bounds_for_loss: float = 0.0,
    eps: float = 1e-10,
) -> dict[str, torch.Tensor]:
    """Bond, angle and clash bounds between atoms of the same residue.

    Args:
        atom14_pred_positions: [*, N, 14, 3]; atom14_atom_exists: [*, N, 14].
        atom14_dists_lower_bound, atom14_dists_upper_bound: [*, N, 14, 14].

    Returns:
        per_atom_loss_sum [*, N, 14], per_atom_violations [*, N, 14].
    """
    dtype = atom14_pred_positions.dtype
    exists = atom14_atom_exists.to(dtype)
    not_self = 1.0 - torch.eye(14, device=exists.device, dtype=dtype)
    dists_mask = exists[..., :, :, None] * exists[..., :, None, :] * not_self
    diff = atom14_pred_positions[..., :, :, None, :] - atom14_pred_positions[..., :, None, :, :]
    dists = torch.sqrt(eps + torch.sum(diff * diff, dim=-1))  # [*, N, 14, 14]

    low_error = torch.relu(atom14_dists_lower_bound + tighten_bounds_for_loss - dists)
    high_error = torch.relu(dists - (atom14_dists_upper_bound - tighten_bounds_for_loss))
    loss = dists_mask * (low_error + high_error)
    per_atom_loss_sum = torch.sum(loss, dim=-2) + torch.sum(loss, dim=-1)

    outside = (dists < atom14_dists_lower_bound) | (dists > atom14_dists_upper_bound)
    violations = dists_mask * outside.to(dtype)
    per_atom_violations = torch.maximum(
        torch.amax(violations, dim=-2), torch.amax(violations, dim=-1)
    )
    return {"per_atom_loss_sum": per_atom_loss_sum, "per_atom_violations": per_atom_violations}


def find_structural_violations(
    atom14_pred_positions: torch.Tensor,
    aatype: torch.Tensor,
    residue_index: torch.Tensor,
    atom14_atom_exists: torch.Tensor,
    residx_atom14_to_atom37: torch.Tensor,
    violation_tolerance_factor: float = 12.0,
    clash_overlap_tolerance: float = 1.5,
    tables: ViolationTables | None = None,
) -> dict[str, dict[str, torch.Tensor] | torch.Tensor]:
    """All violation terms of a predicted atom14 structure [*, N, 14, 3].

    `tables` must have been built with the same tolerance factor and overlap tolerance
    (`make_violation_tables`); `AlphaFoldLoss` keeps them as buffers.

    Returns a nested dict with AlphaFold's keys ("between_residues", "within_residues",
    "total_per_residue_violations_mask").
    """
    dtype = atom14_pred_positions.dtype
    if tables is None:
        tables = make_violation_tables(
            violation_tolerance_factor, clash_overlap_tolerance, atom14_pred_positions.device, dtype
        )
    exists = atom14_atom_exists.to(dtype)
    connection = between_residue_bond_loss(
        atom14_pred_positions,
        exists,
        residue_index,
        aatype,
        tolerance_factor_soft=violation_tolerance_factor,
        tolerance_factor_hard=violation_tolerance_factor,
    )
    atom14_radius = exists * tables.atom37_radius.to(dtype)[residx_atom14_to_atom37.long()]
    clashes = between_residue_clash_loss(
        atom14_pred_positions,
        exists,
        atom14_radius,
        residue_index,
        overlap_tolerance_soft=clash_overlap_tolerance,
        overlap_tolerance_hard=clash_overlap_tolerance,
    )
    within = within_residue_violations(
        atom14_pred_positions,
        exists,
        tables.lower_bound.to(dtype)[aatype.long()],
        tables.upper_bound.to(dtype)[aatype.long()],
        tighten_bounds_for_loss=0.0,
    )
    per_residue_violations = torch.maximum(
        connection["per_residue_violation_mask"],
        torch.maximum(
            torch.amax(clashes["per_atom_clash_mask"], dim=-1),
            torch.amax(within["per_atom_violations"], dim=-1),
        ),
    )
    return {
        "between_residues": {
            "bonds_c_n_loss_mean": connection["c_n_loss_mean"],
            "angles_ca_c_n_loss_mean": connection["ca_c_n_loss_mean"],
            "angles_c_n_ca_loss_mean": connection["c_n_ca_loss_mean"],
            "connections_per_residue_loss_sum": connection["per_residue_loss_sum"],
            "connections_per_residue_violation_mask": connection["per_residue_violation_mask"],
            "clashes_mean_loss": clashes["mean_loss"],
            "clashes_per_atom_loss_sum": clashes["per_atom_loss_sum"],
            "clashes_per_atom_clash_mask": clashes["per_atom_clash_mask"],
        },
        "within_residues": within,
        "total_per_residue_violations_mask": per_residue_violations,
    }


def violation_loss(
    violations: dict,
    atom14_atom_exists: torch.Tensor,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Bond and angle means plus the clash sums per existing atom: [*].

    eps: the reference configures 1e-8; AlphaFold hard-codes 1e-6 (immaterial: the
    denominator counts atoms).
    """
    between = violations["between_residues"]
    num_atoms = torch.sum(atom14_atom_exists, dim=(-1, -2))
    clash = torch.sum(
        between["clashes_per_atom_loss_sum"] + violations["within_residues"]["per_atom_loss_sum"],
        dim=(-1, -2),
    ) / (eps + num_atoms)
    return (
        between["bonds_c_n_loss_mean"]
        + between["angles_ca_c_n_loss_mean"]
        + between["angles_c_n_ca_loss_mean"]
        + clash
    )
