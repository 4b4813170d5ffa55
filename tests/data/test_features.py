"""The feature dict on the mini dataset: contract shapes and dtypes, determinism, and the
reference's invariants."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from scalefold.data.dataset import (
    ChainDataset,
    training_dataset,
    validation_dataset,
    validation_seeds,
)
from scalefold.data.features import FEATURE_NAMES, LONG_FEATURES
from scalefold.data.layout import DataError

N, C, E, T, R = 256, 124, 1024, 4, 4
SHAPES = {
    "aatype": (N,), "target_feat": (N, 22), "residue_index": (N,), "seq_mask": (N,),
    "msa_feat": (C, N, 49), "msa_mask": (C, N), "extra_msa": (E, N), "extra_has_deletion": (E, N),
    "extra_deletion_value": (E, N), "extra_msa_mask": (E, N), "template_aatype": (T, N),
    "template_all_atom_positions": (T, N, 37, 3), "template_all_atom_mask": (T, N, 37), "template_mask": (T,),
    "template_pseudo_beta": (T, N, 3), "template_pseudo_beta_mask": (T, N),
    "template_torsion_angles_sin_cos": (T, N, 7, 2), "template_alt_torsion_angles_sin_cos": (T, N, 7, 2),
    "template_torsion_angles_mask": (T, N, 7), "atom14_atom_exists": (N, 14), "residx_atom14_to_atom37": (N, 14),
    "residx_atom37_to_atom14": (N, 37), "atom37_atom_exists": (N, 37), "all_atom_positions": (N, 37, 3),
    "all_atom_mask": (N, 37), "atom14_gt_positions": (N, 14, 3), "atom14_alt_gt_positions": (N, 14, 3),
    "atom14_gt_exists": (N, 14), "atom14_alt_gt_exists": (N, 14), "atom14_atom_is_ambiguous": (N, 14),
    "rigidgroups_gt_frames": (N, 8, 4, 4), "rigidgroups_alt_gt_frames": (N, 8, 4, 4),
    "rigidgroups_gt_exists": (N, 8), "rigidgroups_group_exists": (N, 8), "rigidgroups_group_is_ambiguous": (N, 8),
    "backbone_rigid_tensor": (N, 4, 4), "backbone_rigid_mask": (N,), "chi_angles_sin_cos": (N, 4, 2),
    "chi_mask": (N, 4), "pseudo_beta": (N, 3), "pseudo_beta_mask": (N,), "true_msa": (C, N), "bert_mask": (C, N),
    "resolution": (), "seq_length": (), "is_distillation": (),
}  # fmt: skip


@pytest.fixture(scope="module")
def train_ds(mini_layout):
    ds, weights = training_dataset(mini_layout)
    return ds


def _index(ds: ChainDataset, chain: str) -> int:
    return [ds.chain_id(i) for i in range(len(ds))].index(chain)


@pytest.fixture(scope="module")
def sample(train_ds):
    return train_ds[(_index(train_ds, "3kpr_A"), 1234)]


def test_contract_names_shapes_dtypes(sample):
    assert set(sample) == set(SHAPES) == set(FEATURE_NAMES)
    for name, shape in SHAPES.items():
        assert tuple(sample[name].shape) == (*shape, R), name
        assert sample[name].dtype == (torch.long if name in LONG_FEATURES else torch.float32), name


def test_crop_window_and_padding(sample):
    # 3kpr_A has 276 residues: a contiguous 256-residue window, no padding.
    ri = sample["residue_index"][..., 0]
    assert torch.equal(ri, ri[0] + torch.arange(256)) and 0 <= int(ri[0]) <= 20
    assert int(sample["seq_length"][0]) == 256 and sample["seq_mask"].all()
    for r in range(1, R):  # same window and structure in every recycling iteration
        assert torch.equal(sample["aatype"][..., r], sample["aatype"][..., 0])
        assert torch.equal(
            sample["all_atom_positions"][..., r], sample["all_atom_positions"][..., 0]
        )
    # ...but a new MSA sample and masking per iteration, with the query always first
    assert not torch.equal(sample["bert_mask"][..., 0], sample["bert_mask"][..., 1])
    true_msa = sample["true_msa"]
    assert torch.equal(true_msa[0, :, 0], true_msa[0, :, 2])
    assert torch.equal(true_msa[0, :, 0], sample["aatype"][..., 0])


def test_msa_features_consistent(sample):
    feat = sample["msa_feat"][..., 0]
    rows = int(sample["msa_mask"][:, 0, 0].sum())
    assert rows == 124  # the mini MSAs are deeper than 124 rows
    np.testing.assert_allclose(feat[:rows, :, :23].sum(-1), 1.0)  # one-hot (masked) residue
    np.testing.assert_allclose(feat[:rows, :, 25:48].sum(-1), 1.0, atol=1e-4)  # cluster profile
    corrupted = feat[:rows, :, :23].argmax(-1)
    true_msa, bert = sample["true_msa"][:rows, :, 0], sample["bert_mask"][:rows, :, 0]
    assert torch.equal(corrupted[bert == 0], true_msa[bert == 0])
    assert 0.1 < float(bert.mean()) < 0.2
    extra_rows = int(sample["extra_msa_mask"][:, 0, 0].sum())
    assert 0 < extra_rows < 1024 and not sample["extra_msa_mask"][extra_rows:].any()
    assert int(sample["extra_msa"].max()) <= 21


def test_target_feat_and_ground_truth(sample):
    aatype = sample["aatype"][..., 0]
    tf = sample["target_feat"][..., 0]
    assert torch.equal(tf[:, 1:].argmax(-1), aatype) and not tf[:, 0].any()
    gt = sample["atom14_gt_positions"][..., 0]
    idx = sample["residx_atom14_to_atom37"][..., 0]
    pos37 = sample["all_atom_positions"][..., 0]
    expect = (
        torch.gather(pos37, 1, idx[..., None].expand(-1, -1, 3))
        * sample["atom14_gt_exists"][..., 0, None]
    )
    torch.testing.assert_close(gt, expect)
    assert sample["backbone_rigid_mask"].mean() > 0.9


def test_deterministic_for_a_seed(train_ds, sample):
    again = train_ds[(_index(train_ds, "3kpr_A"), 1234)]
    assert all(torch.equal(sample[k], again[k]) for k in sample)
    other = train_ds[(_index(train_ds, "3kpr_A"), 99)]
    assert not torch.equal(sample["bert_mask"], other["bert_mask"])


def test_eval_mode_keeps_whole_chain_and_templates(mini_layout):
    split = json.loads((mini_layout.root / "mini_split.json").read_text())
    ds = validation_dataset(mini_layout, chain_ids=split["validation"])
    seeds = validation_seeds(ds)
    assert seeds == validation_seeds(ds)
    f = ds[(0, seeds[0])]
    assert ds.chain_id(0) == "3pwp_A"
    assert f["aatype"].shape == (275, R) and int(f["seq_length"][0]) == 275
    # Hits from 1bd2/3kpr HLA-A2 chains are real homologues of 3pwp_A: templates exist.
    tmask = f["template_mask"][:, 0]
    assert tmask.sum() >= 1
    t0 = f["template_all_atom_mask"][0, :, :, 0]
    assert t0.sum() > 500 and f["template_pseudo_beta_mask"][0, :, 0].sum() > 100
    tors = f["template_torsion_angles_sin_cos"][0, :, :, :, 0]
    ok = f["template_torsion_angles_mask"][0, :, :, 0] > 0
    torch.testing.assert_close(tors[ok].norm(dim=-1), torch.ones(int(ok.sum())), atol=1e-4, rtol=0)


def test_bad_inputs_raise_with_chain_and_file(train_ds, mini_layout, tmp_path):
    import shutil

    from scalefold.data.layout import AlignmentDB

    i = _index(train_ds, "5pti_A")
    db = train_ds.alignments
    saved = dict(db.index["5pti_A"])
    # The a3m of another protein stored in the same shard (5pti_A has 58 residues).
    other = next(c for c, e in db.index.items() if e["db"] == saved["db"] and c[:4] != "5pti")
    wrong = [f for f in db.index[other]["files"] if f[0] == "uniref90_hits.a3m"]
    try:
        db.index["5pti_A"] = {"db": saved["db"], "files": wrong}
        with pytest.raises(DataError, match="uniref90_hits.a3m has .* aligned columns") as err:
            train_ds[(i, 0)]
        assert err.value.chain == "5pti_A" and err.value.path.endswith(".db")
        del db.index["5pti_A"]
        with pytest.raises(DataError, match="no alignment entry") as err:
            train_ds[(i, 0)]
        assert err.value.path.endswith("super.index")
        db.index["5pti_A"] = {"db": saved["db"], "files": [["uniref90_hits.a3m", 0, "x"]]}
        with pytest.raises(DataError, match="malformed super.index entry") as err:
            train_ds[(i, 0)]
        assert err.value.chain == "5pti_A" and err.value.path.endswith("super.index")
    finally:
        db.index["5pti_A"] = saved
    assert isinstance(AlignmentDB(mini_layout.alignments_dir), AlignmentDB)
    assert shutil.which("kalign")


def test_empty_msa_files_are_passed_over_as_the_reference_does(train_ds):
    """An empty file is passed over; no MSA at all gives the query as the only row."""
    i = _index(train_ds, "5pti_A")
    db = train_ds.alignments
    saved = dict(db.index["5pti_A"])
    seq = train_ds.records[i]["sequence"]
    try:
        db.index["5pti_A"] = {"db": saved["db"], "files": [["uniref90_hits.a3m", 0, 0]]}
        raw = train_ds.raw_chain(i, 0)
        assert raw.msa.shape == (1, len(seq)) and not raw.deletion_matrix.any()
        from scalefold.data.msa import encode_rows

        np.testing.assert_array_equal(raw.msa, encode_rows([seq]))
    finally:
        db.index["5pti_A"] = saved
