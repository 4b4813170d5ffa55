"""lDDT-Cα / full-atom lDDT against biotite (real chains) and AlphaFold's lddt."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scalefold.geometry import residue_constants as rc
from scalefold.metrics import (
    CA_INDEX,
    LDDT_THRESHOLDS,
    lddt,
    lddt_all_atom,
    lddt_ca,
    mean_over_chains,
)

# A dependency of the package (pyproject.toml), absent from the GPU machine's environment,
# where scripts/gpu_tests.sh collects every module to pick the GPU tests.
struc = pytest.importorskip("biotite.structure")

NOISE_SIGMAS = (0.0, 0.05, 0.3, 1.0, 3.0, 8.0)

# biotite counts a deviation d as preserved when d <= bin and a partner as included when
# its distance is <= the radius; the benchmark uses strict "<" for both. The largest
# float64 below each value turns biotite's test into the strict one.
STRICT_BINS = tuple(np.nextafter(t, -np.inf) for t in LDDT_THRESHOLDS)
STRICT_RADIUS = float(np.nextafter(15.0, -np.inf))


def _atom_array(positions: np.ndarray, res_ids: np.ndarray, names: list[str]) -> struc.AtomArray:
    atoms = struc.AtomArray(len(positions))
    atoms.coord = positions
    atoms.res_id = res_ids
    atoms.chain_id[:] = "A"
    atoms.res_name[:] = "ALA"
    atoms.atom_name = np.array(names)
    atoms.element = np.array([name[0] for name in names])
    return atoms


def _biotite_lddt_ca(true_ca, pred_ca, mask, aggregation="all"):
    # Unresolved residues are given NaN coordinates, which biotite leaves without contacts.
    ref = np.where(mask[:, None] > 0, true_ca, np.nan)
    atoms = _atom_array(ref, np.arange(len(ref)), ["CA"] * len(ref))
    return struc.lddt(
        atoms,
        pred_ca,
        aggregation=aggregation,
        inclusion_radius=STRICT_RADIUS,
        distance_bins=STRICT_BINS,
        exclude_same_residue=True,
        symmetric=False,
    )


def _noisy(positions: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return positions + sigma * rng.standard_normal(positions.shape)


def test_ca_index_is_the_atom37_ca_slot():
    assert rc.atom_order["CA"] == CA_INDEX


@pytest.mark.parametrize("drop_fraction", [0.0, 0.15])
def test_lddt_ca_matches_biotite_on_real_chains(real_chains, drop_fraction):
    for chain_no, chain in enumerate(real_chains):
        rng = np.random.default_rng(chain_no)
        mask37 = chain.all_atom_mask.copy()
        mask37[rng.random(len(mask37)) < drop_fraction, CA_INDEX] = 0.0
        true_ca = chain.all_atom_positions[:, CA_INDEX]
        for k, sigma in enumerate(NOISE_SIGMAS):
            pred37 = _noisy(chain.all_atom_positions, sigma, seed=100 * chain_no + k)
            ours = lddt_ca(
                torch.from_numpy(pred37),
                torch.from_numpy(chain.all_atom_positions),
                torch.from_numpy(mask37),
            )
            theirs = _biotite_lddt_ca(true_ca, pred37[:, CA_INDEX], mask37[:, CA_INDEX])
            assert abs(float(ours) - float(theirs)) < 1e-6, (chain.name, sigma)

            ours_res = lddt_ca(
                torch.from_numpy(pred37),
                torch.from_numpy(chain.all_atom_positions),
                torch.from_numpy(mask37),
                per_residue=True,
            ).numpy()
            theirs_res = _biotite_lddt_ca(
                true_ca, pred37[:, CA_INDEX], mask37[:, CA_INDEX], aggregation="residue"
            )
            has_contacts = ~np.isnan(theirs_res)
            np.testing.assert_allclose(ours_res[has_contacts], theirs_res[has_contacts], atol=1e-6)
            # A residue without scored pairs scores 1 (eps / eps), as in the reference.
            np.testing.assert_allclose(ours_res[~has_contacts], 1.0, atol=1e-6)
        if drop_fraction == 0.0:
            assert float(ours) < 0.2  # the 8 Å noise really destroys the structure


def test_lddt_ca_decreases_with_noise(real_chains):
    chain = real_chains[0]
    truth = torch.from_numpy(chain.all_atom_positions)
    mask = torch.from_numpy(chain.all_atom_mask)
    scores = [
        float(lddt_ca(torch.from_numpy(_noisy(chain.all_atom_positions, s, 7)), truth, mask))
        for s in NOISE_SIGMAS
    ]
    assert scores[0] == pytest.approx(1.0, abs=1e-12)
    assert all(a >= b for a, b in zip(scores, scores[1:]))
    assert scores[2] < scores[1] and scores[-1] < 0.2


def test_full_atom_lddt_matches_biotite(real_chains):
    chain = real_chains[0]
    pred37 = _noisy(chain.all_atom_positions, 0.5, seed=3)
    present = chain.all_atom_mask > 0
    res_ids = np.nonzero(present)[0]
    names = [rc.atom_types[j] for j in np.nonzero(present)[1]]
    reference = _atom_array(chain.all_atom_positions[present], res_ids, names)
    subject = pred37[present]
    kwargs = dict(
        inclusion_radius=STRICT_RADIUS, distance_bins=STRICT_BINS, exclude_same_residue=True
    )
    theirs = struc.lddt(reference, subject, **kwargs)
    theirs_res = struc.lddt(reference, subject, aggregation="residue", **kwargs)

    # biotite measures distances in float32 (~1e-6 Å rounding), so a scored pair whose
    # deviation lies within 1e-5 Å of a threshold may legitimately be binned differently.
    # Allow exactly those pairs to differ, nothing else.
    true_xyz = chain.all_atom_positions[present]
    true_d = np.linalg.norm(true_xyz[:, None] - true_xyz[None], axis=-1)
    pred_d = np.linalg.norm(subject[:, None] - subject[None], axis=-1)
    scored = (true_d < 15.0) & (res_ids[:, None] != res_ids[None, :])
    dev = np.abs(true_d - pred_d)
    near_tie = scored & (np.min(np.abs(dev[..., None] - np.array(LDDT_THRESHOLDS)), -1) < 1e-5)
    slack = 0.25 * near_tie.sum() / scored.sum() + 1e-9
    per_res_slack = (
        np.bincount(res_ids, weights=near_tie.sum(-1))
        * 0.25
        / np.maximum(np.bincount(res_ids, weights=scored.sum(-1)), 1)
        + 1e-9
    )
    assert near_tie.sum() <= 10  # the allowance stays tiny

    args = (
        torch.from_numpy(pred37),
        torch.from_numpy(chain.all_atom_positions),
        torch.from_numpy(chain.all_atom_mask),
    )
    assert abs(float(lddt_all_atom(*args)) - float(theirs)) <= slack
    ours_res = lddt_all_atom(*args, per_residue=True).numpy()
    assert np.all(np.abs(ours_res - theirs_res) <= per_res_slack)
    # Block size only changes the memory footprint.
    assert float(lddt_all_atom(*args, block_size=7)) == pytest.approx(
        float(lddt_all_atom(*args)), abs=1e-12
    )


@pytest.mark.oracle
def test_lddt_matches_alphafold_lddt(real_chains):
    af_lddt = pytest.importorskip("alphafold.model.lddt")
    chain = real_chains[1]
    pred = _noisy(chain.all_atom_positions, 1.0, seed=11)[:, CA_INDEX].astype(np.float32)
    true = chain.all_atom_positions[:, CA_INDEX].astype(np.float32)
    mask = chain.all_atom_mask[:, CA_INDEX].astype(np.float32)
    mask[::9] = 0.0
    for per_residue in (False, True):
        theirs = np.asarray(
            af_lddt.lddt(pred[None], true[None], mask[None, :, None], per_residue=per_residue)
        )[0]
        ours = lddt(
            torch.from_numpy(pred),
            torch.from_numpy(true),
            torch.from_numpy(mask),
            eps=1e-10,
            per_residue=per_residue,
        ).numpy()
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)


def test_batched_padded_chains_equal_single_chains(real_chains):
    # Padding residues (mask 0) must not change a chain's score.
    n_max = max(len(c.aatype) for c in real_chains)
    preds, truths, masks, singles = [], [], [], []
    for k, chain in enumerate(real_chains):
        pred = _noisy(chain.all_atom_positions, 1.5, seed=k)
        pad = n_max - len(chain.aatype)
        preds.append(np.pad(pred, ((0, pad), (0, 0), (0, 0)), constant_values=3.0))
        truths.append(np.pad(chain.all_atom_positions, ((0, pad), (0, 0), (0, 0))))
        masks.append(np.pad(chain.all_atom_mask, ((0, pad), (0, 0))))
        singles.append(
            float(
                lddt_ca(
                    torch.from_numpy(pred),
                    torch.from_numpy(chain.all_atom_positions),
                    torch.from_numpy(chain.all_atom_mask),
                )
            )
        )
    batched = lddt_ca(
        torch.from_numpy(np.stack(preds)),
        torch.from_numpy(np.stack(truths)),
        torch.from_numpy(np.stack(masks)),
    )
    np.testing.assert_allclose(batched.numpy(), singles, rtol=0, atol=1e-12)
    assert mean_over_chains(batched) == pytest.approx(np.mean(singles), abs=1e-12)
    assert mean_over_chains(singles) == pytest.approx(np.mean(singles), abs=1e-12)


def test_lddt_is_invariant_to_rigid_motion(real_chains):
    chain = real_chains[0]
    pred = _noisy(chain.all_atom_positions, 1.0, seed=5)
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((3, 3)))
    moved = pred @ q.T + np.array([10.0, -4.0, 7.0])
    truth = torch.from_numpy(chain.all_atom_positions)
    mask = torch.from_numpy(chain.all_atom_mask)
    a = float(lddt_ca(torch.from_numpy(pred), truth, mask))
    b = float(lddt_ca(torch.from_numpy(moved), truth, mask))
    assert a == pytest.approx(b, abs=1e-9)


def test_lddt_edge_cases():
    with pytest.raises(ValueError, match="zero-length"):
        lddt_ca(torch.zeros(0, 37, 3), torch.zeros(0, 37, 3), torch.zeros(0, 37))
    with pytest.raises(ValueError, match="zero-length"):
        lddt_all_atom(torch.zeros(2, 0, 37, 3), torch.zeros(2, 0, 37, 3), torch.zeros(2, 0, 37))
    with pytest.raises(ValueError):
        mean_over_chains([])

    gen = torch.Generator().manual_seed(0)
    truth = 10 * torch.randn(6, 37, 3, generator=gen, dtype=torch.float64)
    # All masked, one residue, identical coordinates: finite scores and gradients.
    cases = [
        (
            truth + torch.randn(6, 37, 3, generator=gen, dtype=torch.float64),
            truth,
            torch.zeros(6, 37, dtype=torch.float64),
        ),
        (truth[:1].clone(), truth[:1], torch.ones(1, 37, dtype=torch.float64)),
        (truth.clone(), truth, torch.ones(6, 37, dtype=torch.float64)),
    ]
    for pred, true, mask in cases:
        pred = pred.requires_grad_(True)
        for per_residue in (False, True):
            score = lddt_ca(pred, true, mask, per_residue=per_residue)
            assert torch.isfinite(score).all()
            # Piecewise constant in the coordinates: no gradient path at all.
            assert not score.requires_grad
        assert float(lddt_ca(pred, true, mask)) == pytest.approx(1.0)
        assert float(lddt_all_atom(pred.detach(), true, mask)) == pytest.approx(1.0)
