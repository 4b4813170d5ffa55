"""Details where the project must do what the MLPerf reference does (issue 21, part 4):
the extra-MSA global attention's eps, template torsion precision, unknown resolutions, and
the reference's features the project does not emit (docs/CONTRACTS.md)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from scalefold.data.features import FEATURE_NAMES, _template_features
from scalefold.geometry import all_atom
from scalefold.geometry import residue_constants as rc


def test_extra_msa_global_attention_eps_is_the_references():
    from scalefold.model.config import AlphaFoldConfig
    from scalefold.model.evoformer import ExtraMSABlock

    for cfg in (AlphaFoldConfig.mlperf(), AlphaFoldConfig.tiny()):
        assert cfg.extra_msa.eps == 1e-8  # the reference's ExtraMSAStackConfig.eps
        block = ExtraMSABlock(cfg.extra_msa)
        assert block.msa_att_col.global_attention.eps == 1e-8


@pytest.fixture(scope="module")
def raw_with_templates(mini_layout):
    from scalefold.data.dataset import validation_dataset

    split = json.loads((mini_layout.root / "mini_split.json").read_text())
    ds = validation_dataset(mini_layout, chain_ids=split["validation"])
    raw = ds.raw_chain(0, 0)
    assert raw.template_aatype.shape[0] > 0
    return raw


def _torsions(raw, dtype):
    aa = torch.from_numpy(raw.template_aatype).clamp(max=rc.restype_num)
    pos = torch.from_numpy(raw.template_all_atom_positions).to(dtype)
    mask = torch.from_numpy(raw.template_all_atom_mask).to(dtype)
    return all_atom.atom37_to_torsion_angles(aa, pos, mask)


def test_template_torsions_are_float32_as_the_reference(raw_with_templates):
    raw = raw_with_templates
    feats = _template_features(raw)
    f32, f64 = _torsions(raw, torch.float32), _torsions(raw, torch.float64)
    mask = feats["template_torsion_angles_mask"]
    np.testing.assert_array_equal(mask, f64["torsion_angles_mask"].numpy())
    on = mask > 0
    for key in ("torsion_angles_sin_cos", "alt_torsion_angles_sin_cos"):
        ours = feats[f"template_{key}"]
        # Bit for bit the float32 computation (what the reference does) ...
        np.testing.assert_array_equal(ours, f32[key].numpy())
        # ... and where the torsion exists, float64 agrees to float32 precision.
        np.testing.assert_allclose(ours[on], f64[key].numpy()[on], atol=1e-5)
        # Under a zero mask the values are NOT masked away: the template angle feature
        # carries them to the model, and there they depend on the precision. So float64
        # (our earlier choice) would not give the reference's inputs.
        off = f64[key].numpy()[~on] - f32[key].numpy().astype(np.float64)[~on]
        assert np.abs(off).max() > 1e-3
    from scalefold.model.template import build_template_angle_feat

    angle = build_template_angle_feat({
        "template_aatype": torch.from_numpy(raw.template_aatype),
        **{k: torch.from_numpy(np.asarray(feats[k])) for k in (
            "template_torsion_angles_sin_cos", "template_alt_torsion_angles_sin_cos",
            "template_torsion_angles_mask")},
    })
    masked_sc = angle[..., 22:36].reshape(*mask.shape, 2)[~on]
    assert masked_sc.abs().max() > 0.5  # masked torsions reach the model


def test_unknown_resolution_nan_and_zero_agree_in_every_filter(mini_layout):
    """NMR entries have no resolution: chains.csv holds NaN (as the reference's), the
    feature `resolution` is 0.0 (the reference's is NaN). Every filter agrees on both."""
    from scalefold.data.selection import TrainingSetConfig, filter_training_chains
    from scalefold.losses._common import resolution_filter
    from scalefold.losses.config import (
        ExperimentallyResolvedLossConfig,
        PLDDTLossConfig,
        TMLossConfig,
    )

    # 1. The training selection reads chains.csv: unknown resolution is kept, as the
    #    reference's `resolution < 9 | isnull`.
    chains = pd.DataFrame({
        "pdb_chain_id": ["1abc_A", "2abc_A", "3abc_A"], "release_date": ["2000-01-01"] * 3,
        "resolution": [np.nan, 2.0, 9.5], "sequence": ["ACDEFGHIK"] * 3,
        "pdb_cluster_id": [1, 2, 3],
    })
    kept = filter_training_chains(chains, TrainingSetConfig())["pdb_chain_id"].tolist()
    assert kept == ["1abc_A", "2abc_A"]
    # 2. The losses read the feature through resolution_filter (min <= r <= max): NaN
    #    and 0.0 both give 0 for every configuration (min_resolution 0.1 > 0).
    for cfg in (PLDDTLossConfig(), ExperimentallyResolvedLossConfig(), TMLossConfig()):
        assert cfg.min_resolution > 0.0
        for r in (float("nan"), 0.0):
            got = resolution_filter(torch.tensor([r]), cfg.min_resolution, cfg.max_resolution,
                                    torch.float32)
            assert got.item() == 0.0
    # 3. The dataset turns NaN into 0.0 (a NaN feature would fail the dataset check's
    #    finiteness test of every validation sample).
    from scalefold.data.dataset import ChainDataset
    from scalefold.data.features import FeatureConfig
    from scalefold.data.layout import load_chains_csv

    all_chains = load_chains_csv(mini_layout.chains_csv)
    rows = all_chains[all_chains["pdb_chain_id"] == "5pti_A"].reset_index(drop=True)
    rows["resolution"] = np.nan
    ds = ChainDataset(mini_layout, rows, all_chains, FeatureConfig(mode="eval"))
    assert ds.raw_chain(0, 0).resolution == 0.0


def test_reference_only_features_are_derivable(mini_layout):
    """msa_row_mask, extra_msa_row_mask and template_sum_probs are not emitted (the model
    reads none of them; docs/CONTRACTS.md): the row masks are any() of the per-residue
    masks we emit, which are constant along real residues."""
    from scalefold.data.dataset import validation_dataset

    assert not {"msa_row_mask", "extra_msa_row_mask", "template_sum_probs"} & set(FEATURE_NAMES)
    split = json.loads((mini_layout.root / "mini_split.json").read_text())
    ds = validation_dataset(mini_layout, chain_ids=split["validation"][:1])
    f = ds[(0, 7)]
    seq = f["seq_mask"][..., 0] > 0
    for name in ("msa_mask", "extra_msa_mask"):
        m = f[name][..., seq, :]  # [rows, real residues, R]
        row = m.amax(dim=-2, keepdim=True)
        assert torch.equal(m, row.expand_as(m)), name  # a row is all in or all out
