"""float64 gradcheck of the differentiable loss paths on small inputs.

Inputs with thousands of elements use gradcheck's fast mode (a random projection of the
Jacobian checked against finite differences), which keeps the file at a few seconds.
"""

from __future__ import annotations

import pytest
import torch

from scalefold.geometry.rigid import Rigid
from scalefold.losses import (
    backbone_loss,
    compute_fape,
    distogram_loss,
    find_structural_violations,
    masked_msa_loss,
    plddt_loss,
    sidechain_loss,
    supervised_chi_loss,
    violation_loss,
)

from .loss_samples import collate, make_sample

N_RES = 5


@pytest.fixture(scope="module")
def small(real_chains):
    outputs, batch = collate(
        [make_sample(real_chains[0], 30, N_RES, num_layers=2, seed=s, noise=8.0) for s in (1, 2)],
        dtype=torch.float64,
    )
    return outputs, batch


def _leaf(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone().requires_grad_(True)


def test_gradcheck_backbone_fape_clamped_mix(small):
    outputs, batch = small
    traj = _leaf(outputs["sm_frames"])
    use_clamped = torch.tensor([1.0, 0.0], dtype=torch.float64)

    def fn(traj):
        return backbone_loss(
            batch["backbone_rigid_tensor"],
            batch["backbone_rigid_mask"],
            traj,
            use_clamped_fape=use_clamped,
            clamp_distance=3.0,
        )

    errors = fn(traj)  # the 3 Å clamp is active on part of this input
    assert torch.all(errors > 0)
    assert torch.autograd.gradcheck(fn, (traj,), eps=1e-6, atol=1e-6)


def test_gradcheck_sidechain_fape(small):
    outputs, batch = small
    frames = _leaf(outputs["sm_sidechain_frames"])
    positions = _leaf(outputs["sm_positions"])
    alt = torch.zeros(2, N_RES, dtype=torch.float64)

    def fn(frames, positions):
        return sidechain_loss(
            frames,
            positions,
            batch["rigidgroups_gt_frames"],
            batch["rigidgroups_alt_gt_frames"],
            batch["rigidgroups_gt_exists"],
            batch["atom14_gt_positions"],
            batch["atom14_gt_exists"],
            alt,
            clamp_distance=4.0,
        )

    assert torch.autograd.gradcheck(fn, (frames, positions), eps=1e-6, atol=1e-6, fast_mode=True)


def test_gradcheck_supervised_chi(small):
    outputs, batch = small
    angles = _leaf(outputs["sm_angles"])
    unnormalized = _leaf(outputs["sm_unnormalized_angles"])

    def fn(angles, unnormalized):
        return supervised_chi_loss(
            angles,
            unnormalized,
            batch["aatype"],
            batch["seq_mask"],
            batch["chi_mask"],
            batch["chi_angles_sin_cos"],
        )

    assert torch.autograd.gradcheck(fn, (angles, unnormalized), eps=1e-6, atol=1e-7)


def test_gradcheck_plddt_target_path(small):
    """Gradient reaches the logits only; the lDDT target is a stopped gradient, so the
    analytic gradient with respect to the predicted positions is exactly zero, which
    gradcheck confirms numerically (the binned target is locally constant)."""
    outputs, batch = small
    logits = _leaf(outputs["lddt_logits"])
    positions = _leaf(outputs["final_atom_positions"])

    def fn(logits, positions):
        return plddt_loss(
            logits,
            positions,
            batch["all_atom_positions"],
            batch["all_atom_mask"],
            batch["resolution"],
        )

    assert torch.autograd.gradcheck(fn, (logits, positions), eps=1e-6, atol=1e-7, fast_mode=True)
    (g,) = torch.autograd.grad(fn(logits, positions).sum(), positions, allow_unused=True)
    assert g is None or torch.count_nonzero(g) == 0


def test_gradcheck_logit_losses(small):
    outputs, batch = small
    dgram = _leaf(outputs["distogram_logits"])
    msa = _leaf(outputs["masked_msa_logits"])
    assert torch.autograd.gradcheck(
        lambda x: distogram_loss(x, batch["pseudo_beta"], batch["pseudo_beta_mask"]),
        (dgram,),
        eps=1e-6,
        atol=1e-7,
        fast_mode=True,
    )
    assert torch.autograd.gradcheck(
        lambda x: masked_msa_loss(x, batch["true_msa"], batch["bert_mask"]),
        (msa,),
        eps=1e-6,
        atol=1e-7,
        fast_mode=True,
    )


def test_gradcheck_violation(small):
    outputs, batch = small
    positions = _leaf(outputs["sm_positions"][:, -1])

    def fn(positions):
        violations = find_structural_violations(
            positions,
            batch["aatype"],
            batch["residue_index"],
            batch["atom14_atom_exists"],
            batch["residx_atom14_to_atom37"],
        )
        return violation_loss(violations, batch["atom14_atom_exists"])

    assert float(fn(positions).detach().sum()) > 0
    assert torch.autograd.gradcheck(fn, (positions,), eps=1e-6, atol=1e-6, fast_mode=True)


@pytest.mark.parametrize("clamp", [None, 2.0])
def test_gradcheck_compute_fape_full_jacobian(clamp):
    gen = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(2, 4, 3, 3, generator=gen, dtype=torch.float64))
    rot = _leaf(q[0])
    trans = _leaf(3 * torch.randn(4, 3, generator=gen, dtype=torch.float64))
    points = _leaf(3 * torch.randn(5, 3, generator=gen, dtype=torch.float64))
    target = Rigid(q[1], 3 * torch.randn(4, 3, generator=gen, dtype=torch.float64))
    target_points = 3 * torch.randn(5, 3, generator=gen, dtype=torch.float64)
    frames_mask = torch.tensor([1.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    points_mask = torch.tensor([1.0, 0.0, 1.0, 1.0, 1.0], dtype=torch.float64)

    def fn(rot, trans, points):
        return compute_fape(
            Rigid(rot, trans),
            target,
            frames_mask,
            points,
            target_points,
            points_mask,
            length_scale=10.0,
            l1_clamp_distance=clamp,
        )

    assert torch.autograd.gradcheck(fn, (rot, trans, points), eps=1e-6, atol=1e-7)
