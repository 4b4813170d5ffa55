"""The random feature batches follow the contract and are geometrically sound."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scalefold.model.config import AlphaFoldConfig

from .features import (
    atom_index_maps,
    build_structure,
    random_alphafold_features,
    random_torsions,
    residue_constants,
    scalefold_template_torsions,
)
from .features import (
    random_alphafold_features as _features,
)

N, S, E, T, R = 11, 4, 6, 2, 2

CONTRACT = {  # name: (shape without B and R, dtype)
    "aatype": ((N,), torch.long),
    "target_feat": ((N, 22), torch.float32),
    "residue_index": ((N,), torch.long),
    "seq_mask": ((N,), torch.float32),
    "msa_feat": ((S, N, 49), torch.float32),
    "msa_mask": ((S, N), torch.float32),
    "extra_msa": ((E, N), torch.long),
    "extra_has_deletion": ((E, N), torch.float32),
    "extra_deletion_value": ((E, N), torch.float32),
    "extra_msa_mask": ((E, N), torch.float32),
    "template_aatype": ((T, N), torch.long),
    "template_all_atom_positions": ((T, N, 37, 3), torch.float32),
    "template_all_atom_mask": ((T, N, 37), torch.float32),
    "template_mask": ((T,), torch.float32),
    "template_pseudo_beta": ((T, N, 3), torch.float32),
    "template_pseudo_beta_mask": ((T, N), torch.float32),
    "template_torsion_angles_sin_cos": ((T, N, 7, 2), torch.float32),
    "template_alt_torsion_angles_sin_cos": ((T, N, 7, 2), torch.float32),
    "template_torsion_angles_mask": ((T, N, 7), torch.float32),
    "atom14_atom_exists": ((N, 14), torch.float32),
    "residx_atom14_to_atom37": ((N, 14), torch.long),
    "residx_atom37_to_atom14": ((N, 37), torch.long),
    "atom37_atom_exists": ((N, 37), torch.float32),
    "all_atom_positions": ((N, 37, 3), torch.float32),
    "all_atom_mask": ((N, 37), torch.float32),
    "pseudo_beta": ((N, 3), torch.float32),
    "pseudo_beta_mask": ((N,), torch.float32),
    "true_msa": ((S, N), torch.long),
    "bert_mask": ((S, N), torch.float32),
    "resolution": ((), torch.float32),
    "seq_length": ((), torch.long),
    "is_distillation": ((), torch.float32),
}


@pytest.fixture(scope="module")
def batch():
    return random_alphafold_features(AlphaFoldConfig.tiny(), n_res=N, n_clust=S, n_extra=E,
                                     n_templ=T, num_iterations=R, seed=7, n_pad=2)


def test_contract_shapes_and_dtypes(batch):
    assert set(batch) == set(CONTRACT)
    for name, (shape, dtype) in CONTRACT.items():
        assert tuple(batch[name].shape) == (1, *shape, R), name
        assert batch[name].dtype == dtype, name
        assert torch.isfinite(batch[name].float()).all(), name


def test_values_are_valid(batch):
    aatype = batch["aatype"][0, ..., 0]
    assert aatype.min() >= 0 and aatype.max() <= 20
    tf = batch["target_feat"][0, ..., 0]
    assert torch.equal(tf[:, 0], torch.zeros(N))  # between-segment flag
    assert torch.equal(tf[:-2, 1:].argmax(-1), aatype[:-2])
    msa = batch["msa_feat"][0, ..., 0]
    assert torch.allclose(msa[:, :-2, :23].sum(-1), torch.ones(S, N - 2))
    assert torch.allclose(msa[:, :-2, 25:48].sum(-1), torch.ones(S, N - 2), atol=1e-5)
    assert ((msa[..., 24] >= 0) & (msa[..., 24] < 1)).all()
    assert torch.equal(msa[0, :-2, :20].argmax(-1) == aatype[:-2],
                       msa[0, :-2, 22] == 0)  # query row: itself unless BERT-masked
    assert batch["extra_msa"].max() <= 21
    assert batch["template_aatype"].max() <= 21


def test_padding_and_recycling(batch):
    for name in ("seq_mask", "msa_mask", "extra_msa_mask", "atom14_atom_exists",
                 "template_pseudo_beta_mask", "template_all_atom_mask", "all_atom_mask"):
        value = batch[name]
        residue_axis = {"seq_mask": 1, "atom14_atom_exists": 1, "all_atom_mask": 1}.get(name, 2)
        assert value.narrow(residue_axis, N - 2, 2).abs().sum() == 0, name
        assert value.narrow(residue_axis, 0, N - 2).sum() > 0, name
    # MSA features are re-drawn per iteration; the rest is repeated.
    assert not torch.equal(batch["msa_feat"][..., 0], batch["msa_feat"][..., 1])
    assert torch.equal(batch["template_all_atom_positions"][..., 0],
                       batch["template_all_atom_positions"][..., 1])


def test_index_maps_invert_each_other():
    aatype = np.arange(21)
    maps = atom_index_maps(aatype)
    a14, a37 = maps["residx_atom14_to_atom37"], maps["residx_atom37_to_atom14"]
    for r in range(20):
        for i in np.nonzero(maps["atom14_atom_exists"][r])[0]:
            assert a37[r, a14[r, i]] == i
    assert maps["atom14_atom_exists"][:20].sum() == maps["atom37_atom_exists"][:20].sum()
    assert maps["atom14_atom_exists"][20].sum() == 0
    rc = residue_constants()
    np.testing.assert_array_equal(maps["atom37_atom_exists"][:20], rc.restype_atom37_mask[:20])


def test_structures_have_ideal_geometry_and_recover_their_torsions():
    pytest.importorskip("alphafold.model.all_atom")
    from .features import alphafold_template_torsions

    rng = np.random.default_rng(0)
    aatype = rng.integers(0, 20, size=14)
    torsions = random_torsions(rng, 14)
    pos, mask = build_structure(aatype, torsions)
    n, ca, c, o = 0, 1, 2, 4
    np.testing.assert_allclose(np.linalg.norm(pos[1:, n] - pos[:-1, c], axis=-1), 1.33, atol=0.01)
    np.testing.assert_allclose(np.linalg.norm(pos[1:, ca] - pos[:-1, ca], axis=-1), 3.8, atol=0.05)
    # O is trans to the next N across the peptide bond
    np.testing.assert_allclose(np.linalg.norm(pos[1:, n] - pos[:-1, o], axis=-1), 2.25, atol=0.05)

    out = alphafold_template_torsions(aatype[None], pos[None], mask[None])
    sin_cos, tmask = out["torsion_angles_sin_cos"][0], out["torsion_angles_mask"][0]
    got = np.degrees(np.arctan2(sin_cos[..., 0], sin_cos[..., 1]))
    want = np.concatenate([np.r_[0.0, torsions["omega"][:-1]][:, None],
                           torsions["phi"][:, None], torsions["psi"][:, None],
                           torsions["chi"]], axis=-1)
    diff = np.abs((got - want + 180.0) % 360.0 - 180.0)
    # psi and the chis are built exactly from these angles; pre-omega and phi pass through
    # slightly different ideal bond geometry.
    assert diff[tmask > 0][:].max() < 1.0
    assert diff[:, 2:][tmask[:, 2:] > 0].max() < 1e-3


def test_project_torsions_agree_with_alphafolds():
    pytest.importorskip("alphafold.model.all_atom")
    pytest.importorskip("scalefold.geometry.all_atom")
    from .features import alphafold_template_torsions

    batch = _features(None, n_res=16, n_templ=3, seed=11, torsion_fn=None)
    args = (batch["template_aatype"][0, ..., 0].numpy(),
            batch["template_all_atom_positions"][0, ..., 0].numpy(),
            batch["template_all_atom_mask"][0, ..., 0].numpy())
    theirs = alphafold_template_torsions(*args)
    ours = scalefold_template_torsions(*args)
    np.testing.assert_array_equal(ours["torsion_angles_mask"], theirs["torsion_angles_mask"])
    mask = theirs["torsion_angles_mask"][..., None] > 0
    for key in ("torsion_angles_sin_cos", "alt_torsion_angles_sin_cos"):
        np.testing.assert_allclose(np.where(mask, ours[key], 0), np.where(mask, theirs[key], 0),
                                   atol=1e-5)
