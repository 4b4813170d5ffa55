from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scalefold.data.selection import (
    RecyclingSchedule,
    SamplerConfig,
    TrainingSampler,
    ValidationSetConfig,
    add_cluster_sizes,
    filter_training_chains,
    load_cameo_targets,
    sample_weights,
    select_validation_chains,
)


def _chains(rows):
    cols = ["pdb_chain_id", "pdb_id", "author_chain_id", "mmcif_chain_ids", "release_date", "resolution",
            "pdb_cluster_id", "sequence_length", "sequence"]  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


def test_training_filter_boundaries():
    df = _chains(
        [
            ["1aaa_A", "1aaa", "A", "A", "2021-09-16", 2.0, 1, 4, "ACDE"],  # last allowed day
            ["1bbb_A", "1bbb", "A", "A", "2021-09-17", 2.0, 1, 4, "ACDE"],  # too new
            ["1ccc_A", "1ccc", "A", "A", "2000-01-01", 9.0, 1, 4, "ACDE"],  # resolution not < 9
            [
                "1ddd_A",
                "1ddd",
                "A",
                "A",
                "2000-01-01",
                float("nan"),
                1,
                4,
                "ACDE",
            ],  # unknown resolution ok
            ["1eee_A", "1eee", "A", "A", "2000-01-01", 2.0, 1, 10, "AAAAAAAAAC"],  # 90% one residue
            ["1fff_A", "1fff", "A", "A", "2000-01-01", 2.0, -1, 4, "ACDE"],  # no cluster
        ]
    )
    assert filter_training_chains(df)["pdb_chain_id"].tolist() == ["1aaa_A", "1ddd_A"]


def test_sample_weights_formula():
    df = _chains(
        [
            ["a_A", "a", "A", "A", "2000-01-01", 1.0, 7, 100, "A"],
            ["b_A", "b", "A", "A", "2000-01-01", 1.0, 7, 300, "A"],
            ["c_A", "c", "A", "A", "2000-01-01", 1.0, 7, 300, "A"],
            ["d_A", "d", "A", "A", "2000-01-01", 1.0, 7, 300, "A"],
            ["e_A", "e", "A", "A", "2000-01-01", 1.0, 9, 2000, "A"],
        ]
    )
    df = add_cluster_sizes(df)
    assert df["pdb_cluster_size"].tolist() == [4, 4, 4, 4, 1]
    # Default: the reference code's 1/cluster_size.
    w = sample_weights(df)
    np.testing.assert_allclose(w, [256 / 512 / 4, 300 / 512 / 4, 300 / 512 / 4, 300 / 512 / 4, 1.0])
    w_sqrt = sample_weights(df, "inverse_sqrt")
    np.testing.assert_allclose(w_sqrt, [256 / 512 / 2, 300 / 512 / 2, 300 / 512 / 2, 300 / 512 / 2, 1.0])


def test_packaged_cameo_list():
    targets = load_cameo_targets()
    assert len(targets) == 13 and sum(len(v) for v in targets.values()) == 183
    assert min(targets) == "2021-09-18" and max(targets) == "2021-12-11"
    assert "7s13 [L]" in targets["2021-10-16"]


def test_validation_selection_maps_chain_ids_and_filters():
    df = _chains(
        [
            [
                "7bgg_X",
                "7bgg",
                "X",
                "A;C",
                "2021-10-01",
                2.0,
                1,
                100,
                "A" * 100,
            ],  # CAMEO names mmCIF chain A
            ["7bly_A", "7bly", "A", "B", "2021-10-01", 2.0, 1, 701, "A" * 701],  # too long
            [
                "7cz9_B",
                "7cz9",
                "B",
                "Q",
                "2021-10-01",
                2.0,
                1,
                50,
                "A" * 50,
            ],  # CAMEO names author chain B
            ["1abc_A", "1abc", "A", "A", "2021-10-01", 2.0, 1, 50, "A" * 50],  # not a target
        ]
    )
    out = select_validation_chains(df)
    assert out["pdb_chain_id"].tolist() == ["7bgg_X", "7cz9_B"]
    assert out["cameo_target_id"].tolist() == ["7bgg [A]", "7cz9 [B]"]
    narrow = select_validation_chains(
        df, ValidationSetConfig(min_cameo_submission_date="2021-09-19")
    )
    assert narrow.empty


def test_sampler_is_deterministic_and_partitions_ranks():
    w = np.array([0.1, 0.0, 0.5, 0.4])
    full = TrainingSampler(w, SamplerConfig(global_batch_size=4, num_steps=50, seed=3)).pairs
    assert len(full) == 200 and all(i != 1 for i, _ in full)  # weight 0 never drawn
    assert (
        full == TrainingSampler(w, SamplerConfig(global_batch_size=4, num_steps=50, seed=3)).pairs
    )
    ranks = [
        TrainingSampler(w, SamplerConfig(4, 50, 3, rank=r, world_size=2)).pairs for r in range(2)
    ]
    assert ranks[0] == full[0::2] and ranks[1] == full[1::2]
    resumed = TrainingSampler(w, SamplerConfig(4, 50, 3, rank=1, world_size=2, start_step=10)).pairs
    assert resumed == ranks[1][20:]
    counts = np.bincount([i for i, _ in full], minlength=4) / 200
    assert abs(counts[2] - 0.5) < 0.12
    assert len({s for _, s in full}) == 200  # distinct per-sample seeds
    with pytest.raises(ValueError):
        TrainingSampler(w, SamplerConfig(global_batch_size=3, num_steps=1, seed=0, world_size=2))


def test_recycling_schedule_shared_and_uniform():
    a, b = RecyclingSchedule(seed=11), RecyclingSchedule(seed=11)
    draws = a.draws(range(400))
    assert draws == b.draws(range(400))  # every rank computes the same value per step
    assert sorted(draws[:4]) == [0, 1, 2, 3]
    assert np.bincount(draws).tolist() == [100, 100, 100, 100]
    assert draws != RecyclingSchedule(seed=12).draws(range(400))
    assert a(137) == draws[137]  # a pure function of the step (resumable)
