from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from scalefold.data.layout import AlignmentDB, MmcifDictStore, load_chains_csv, load_obsolete
from scalefold.data.parsers import parse_hhr
from scalefold.data.templates import (
    Kalign,
    KalignNotFoundError,
    TemplateConfig,
    TemplateFeaturizer,
    query_to_hit_mapping,
)


@pytest.fixture(scope="module")
def setup(mini_layout):
    chains = load_chains_csv(mini_layout.chains_csv)
    featurizer = TemplateFeaturizer(
        store=MmcifDictStore(mini_layout.dicts_dir),
        release_dates=dict(zip(chains["pdb_id"], chains["release_date"])),
        template_chain_ids=set(chains["pdb_chain_id"]),
        obsolete=load_obsolete(mini_layout.obsolete_dat),
        config=TemplateConfig(shuffle_top_k=None),
    )
    row = chains.set_index("pdb_chain_id").loc["3pwp_A"]
    hits = parse_hhr(AlignmentDB(mini_layout.alignments_dir).read("3pwp_A")["pdb70_hits.hhr"])
    return featurizer, row["sequence"], hits, mini_layout


def test_template_atoms_follow_the_alignment(setup):
    featurizer, query, hits, layout = setup
    feats = featurizer.features(
        query, hits, query_pdb_id="3pwp", query_release_date="2011-03-09", seed=0
    )
    t = feats["template_aatype"].shape[0]
    assert 1 <= t <= 4 and feats["template_all_atom_positions"].shape == (t, len(query), 37, 3)
    name = feats["template_names"][0]
    best = next(h for h in hits if h.name.split()[0] == name)
    pdb_id, chain = name.split("_")
    record = MmcifDictStore(layout.dicts_dir).get(pdb_id)
    pos = record["atoms"][chain]["all_atom_positions"]
    mask = record["atoms"][chain]["all_atom_mask"]
    centred = pos - pos[mask].mean(axis=0)
    seq = record["sequences"][chain]
    offset = seq.find(best.hit_sequence.replace("-", ""))
    mapping = query_to_hit_mapping(query, best)
    q_idx = np.array(list(mapping))
    s_idx = np.array(list(mapping.values())) + offset  # noqa: E702
    got = feats["template_all_atom_positions"][0]
    keep = mask[s_idx].any(-1)
    np.testing.assert_allclose(got[q_idx[keep]] * mask[s_idx[keep]][..., None],
                               centred[s_idx[keep]] * mask[s_idx[keep]][..., None], atol=1e-4)  # fmt: skip
    unaligned = np.setdiff1d(np.arange(len(query)), q_idx)
    assert not feats["template_all_atom_mask"][0][unaligned].any()
    assert np.all(feats["template_aatype"][0][unaligned] == 21)


def test_release_date_cutoff(setup):
    featurizer, query, hits, _ = setup
    feats = featurizer.features(
        query, hits, query_pdb_id="3pwp", query_release_date="1998-09-01", seed=0
    )
    assert feats["template_aatype"].shape[0] == 0  # 1bd2 (1998-08-19) is within 60 days


def test_mismatching_hit_is_realigned_with_kalign(setup):
    featurizer, query, hits, _ = setup
    first = featurizer.features(
        query, hits, query_pdb_id="3pwp", query_release_date="2011-03-09", seed=0
    )
    best = next(h for h in hits if h.name.split()[0] == first["template_names"][0])
    seq = list(best.hit_sequence)
    pos = [i for i, c in enumerate(seq) if c != "-"][10]
    seq[pos] = "W" if seq[pos] != "W" else "A"  # no longer an exact substring of the structure
    mutated = dataclasses.replace(best, hit_sequence="".join(seq))
    featurizer.log.clear()
    feats = featurizer.features(
        query, [mutated], query_pdb_id="3pwp", query_release_date="2011-03-09", seed=0
    )
    assert feats["template_aatype"].shape[0] == 1, featurizer.log
    assert feats["template_all_atom_mask"][0].sum() > 500


def test_shuffle_is_seeded(setup):
    featurizer, query, hits, _ = setup
    shuffling = dataclasses.replace(featurizer, config=TemplateConfig(max_templates=1), log=[])
    names = {
        s: tuple(
            shuffling.features(
                query, hits, query_pdb_id="3pwp", query_release_date="2011-03-09", seed=s
            )["template_all_atom_positions"][0, 5, 1]
        )  # fmt: skip
        for s in range(6)
    }
    again = shuffling.features(
        query, hits, query_pdb_id="3pwp", query_release_date="2011-03-09", seed=3
    )
    assert tuple(again["template_all_atom_positions"][0, 5, 1]) == names[3]
    assert len(set(names.values())) > 1  # different seeds pick different top hits


def test_missing_kalign_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(KalignNotFoundError, match="apt-get install -y kalign"):
        Kalign()
