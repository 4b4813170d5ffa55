"""Cα-RMSD after superposition and GDT against biotite's superimposition."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scalefold.metrics import CA_INDEX, ca_rmsd, gdt_ha, gdt_ts, superimpose

# A dependency of the package (pyproject.toml), absent from the GPU machine's environment,
# where scripts/gpu_tests.sh collects every module to pick the GPU tests.
struc = pytest.importorskip("biotite.structure")


def _random_rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _moved_noisy_copy(positions: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noisy = positions + sigma * rng.standard_normal(positions.shape)
    return noisy @ _random_rotation(seed).T + rng.normal(scale=20.0, size=3)


def _biotite_fit(true_ca: np.ndarray, pred_ca: np.ndarray) -> tuple[np.ndarray, float]:
    fitted, _ = struc.superimpose(true_ca, pred_ca)
    return fitted, float(struc.rmsd(true_ca, fitted))


def _gdt_reference_definition(fitted: np.ndarray, true_ca: np.ndarray, cutoffs) -> float:
    dist = np.linalg.norm(fitted - true_ca, axis=-1)
    return float(np.mean([np.mean(dist <= c) for c in cutoffs]))


@pytest.mark.parametrize("sigma", [0.0, 0.2, 1.0, 4.0])
def test_ca_rmsd_and_gdt_match_biotite(real_chains, sigma):
    for k, chain in enumerate(real_chains):
        pred37 = _moved_noisy_copy(chain.all_atom_positions, sigma, seed=k)
        args = (
            torch.from_numpy(pred37),
            torch.from_numpy(chain.all_atom_positions),
            torch.from_numpy(chain.all_atom_mask),
        )
        true_ca = chain.all_atom_positions[:, CA_INDEX]
        fitted, rmsd = _biotite_fit(true_ca, pred37[:, CA_INDEX])
        # biotite superimposes float32 coordinates (~4e-6 Å rounding at 50 Å).
        assert float(ca_rmsd(*args)) == pytest.approx(rmsd, rel=1e-5, abs=2e-5)
        assert float(gdt_ts(*args)) == pytest.approx(
            _gdt_reference_definition(fitted, true_ca, (1.0, 2.0, 4.0, 8.0)), abs=1e-12
        )
        assert float(gdt_ha(*args)) == pytest.approx(
            _gdt_reference_definition(fitted, true_ca, (0.5, 1.0, 2.0, 4.0)), abs=1e-12
        )
    if sigma == 0.0:
        assert float(ca_rmsd(*args)) < 1e-6
        assert float(gdt_ts(*args)) == 1.0


def test_masked_residues_are_ignored(real_chains):
    chain = real_chains[1]
    pred37 = _moved_noisy_copy(chain.all_atom_positions, 1.0, seed=3)
    keep = np.random.default_rng(1).random(len(chain.aatype)) > 0.3
    mask = chain.all_atom_mask.copy()
    mask[~keep] = 0.0
    pred37[~keep] += 50.0  # garbage where unresolved
    full = ca_rmsd(
        torch.from_numpy(pred37), torch.from_numpy(chain.all_atom_positions), torch.from_numpy(mask)
    )
    subset = ca_rmsd(
        torch.from_numpy(pred37[keep]),
        torch.from_numpy(chain.all_atom_positions[keep]),
        torch.from_numpy(chain.all_atom_mask[keep]),
    )
    assert float(full) == pytest.approx(float(subset), abs=1e-9)


def test_mirror_image_is_not_superimposable(real_chains):
    chain = real_chains[0]
    mirrored = chain.all_atom_positions * np.array([-1.0, 1.0, 1.0])
    rmsd = ca_rmsd(
        torch.from_numpy(mirrored),
        torch.from_numpy(chain.all_atom_positions),
        torch.from_numpy(chain.all_atom_mask),
    )
    assert float(rmsd) > 1.0


def test_batched_superposition_matches_single(real_chains):
    chain = real_chains[0]
    preds = np.stack(
        [
            _moved_noisy_copy(chain.all_atom_positions, s, seed=i)
            for i, s in enumerate((0.5, 2.0, 6.0))
        ]
    )
    truth = np.broadcast_to(chain.all_atom_positions, preds.shape).copy()
    mask = np.broadcast_to(chain.all_atom_mask, preds.shape[:-1]).copy()
    batched = ca_rmsd(torch.from_numpy(preds), torch.from_numpy(truth), torch.from_numpy(mask))
    for i in range(3):
        single = ca_rmsd(
            torch.from_numpy(preds[i]), torch.from_numpy(truth[i]), torch.from_numpy(mask[i])
        )
        assert float(batched[i]) == pytest.approx(float(single), abs=1e-9)


def test_superposition_edge_cases():
    with pytest.raises(ValueError, match="zero-length"):
        superimpose(torch.zeros(0, 3), torch.zeros(0, 3), torch.zeros(0))
    x = torch.randn(5, 37, 3, dtype=torch.float64)
    nothing = torch.zeros(5, 37, dtype=torch.float64)
    assert float(ca_rmsd(x, x + 1.0, nothing)) == 0.0
    assert float(gdt_ts(x, x + 1.0, nothing)) == 0.0
    one = torch.ones(1, 37, dtype=torch.float64)
    assert float(ca_rmsd(x[:1], x[:1] + 3.0, one)) == pytest.approx(0.0, abs=1e-12)
    moved, rmsd = superimpose(x[:, CA_INDEX].float(), x[:, CA_INDEX].float(), one.new_ones(5))
    assert moved.dtype == torch.float32 and torch.isfinite(rmsd)
