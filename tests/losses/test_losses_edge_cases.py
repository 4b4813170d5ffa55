"""Degenerate inputs: finite values and gradients, or a clear error."""

from __future__ import annotations

import pytest
import torch

from scalefold.geometry import all_atom
from scalefold.losses import AlphaFoldLoss, LossConfig, TMLossConfig, backbone_loss, plddt_loss

from .loss_samples import collate, make_sample

ALL_TERMS = LossConfig(tm=TMLossConfig(enabled=True, weight=0.1))

MASK_KEYS = (
    "all_atom_mask",
    "backbone_rigid_mask",
    "rigidgroups_gt_exists",
    "atom14_gt_exists",
    "atom14_alt_gt_exists",
    "chi_mask",
    "seq_mask",
    "pseudo_beta_mask",
    "bert_mask",
)


def _check_finite(outputs: dict, batch: dict) -> dict:
    outputs = {k: v.detach().clone().requires_grad_(True) for k, v in outputs.items()}
    total, breakdown = AlphaFoldLoss(ALL_TERMS)(outputs, batch, torch.tensor([1.0, 0.0]))
    assert torch.isfinite(total)
    assert all(torch.isfinite(v) for v in breakdown.values()), breakdown
    total.backward()
    for key, value in outputs.items():
        if value.grad is not None:
            assert torch.isfinite(value.grad).all(), key
    return breakdown


def test_all_masked_residues(real_chains):
    outputs, batch = collate([make_sample(real_chains[0], 10, 12, seed=s) for s in (1, 2)])
    batch = {k: torch.zeros_like(v) if k in MASK_KEYS else v for k, v in batch.items()}
    breakdown = _check_finite(outputs, batch)
    for name in ("fape", "distogram", "masked_msa", "plddt_loss"):
        assert float(breakdown[name]) == 0.0, name


def test_single_residue(real_chains):
    outputs, batch = collate([make_sample(real_chains[1], 60, 1, seed=s) for s in (3, 4)])
    _check_finite(outputs, batch)


def test_identical_coordinates(real_chains):
    outputs, batch = collate([make_sample(real_chains[0], 10, 12, seed=s) for s in (5, 6)])
    # The prediction is the ground truth, in every layer.
    num_layers = outputs["sm_frames"].shape[1]

    def per_layer(t):
        return t[:, None].expand(-1, num_layers, *t.shape[1:]).clone()

    gt_frames = batch["rigidgroups_gt_frames"]
    torsions = all_atom.atom37_to_torsion_angles(
        batch["aatype"],
        batch["all_atom_positions"],
        batch["all_atom_mask"],
        placeholder_for_undefined=True,
    )["torsion_angles_sin_cos"]
    outputs = dict(
        outputs,
        sm_frames=per_layer(batch["backbone_rigid_tensor"]),
        sm_sidechain_frames=per_layer(gt_frames),
        sm_positions=per_layer(batch["atom14_gt_positions"]),
        sm_angles=per_layer(torsions),
        sm_unnormalized_angles=per_layer(torsions),
        final_atom_positions=batch["all_atom_positions"].clone(),
        final_affine_tensor=batch["backbone_rigid_tensor"].clone(),
    )
    breakdown = _check_finite(outputs, batch)
    # Only the sqrt(eps) floor of the per-pair error remains.
    assert float(breakdown["fape_backbone"]) == pytest.approx(1e-3, rel=1e-3)
    assert float(breakdown["supervised_chi"]) < 1e-6


def test_zero_length_chains_are_rejected(real_chains):
    outputs, batch = collate([make_sample(real_chains[0], 10, 12, seed=1)])

    def empty(t: torch.Tensor) -> torch.Tensor:
        dims = [d for d in range(t.dim()) if t.shape[d] == 12]
        for d in dims:
            t = t.narrow(d, 0, 0)
        return t

    with pytest.raises(ValueError, match="zero-length"):
        AlphaFoldLoss()(
            {k: empty(v) for k, v in outputs.items()}, {k: empty(v) for k, v in batch.items()}
        )
    with pytest.raises(ValueError, match="zero-length"):
        backbone_loss(torch.zeros(1, 0, 4, 4), torch.zeros(1, 0), torch.zeros(1, 8, 0, 4, 4))
    with pytest.raises(ValueError, match="zero-length"):
        plddt_loss(
            torch.zeros(1, 0, 50),
            torch.zeros(1, 0, 37, 3),
            torch.zeros(1, 0, 37, 3),
            torch.zeros(1, 0, 37),
            torch.ones(1),
        )
