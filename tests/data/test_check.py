"""The dataset check on the intact mini dataset: what it returns and how evaluation reuses
the validation samples it prepared (faults: tests/faults/test_data_faults.py)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from scalefold.data import (
    CachedValidationLoader,
    DataError,
    DatasetCheckError,
    check_dataset,
    validation_seeds,
)
from scalefold.data.layout import load_chains_csv


@pytest.fixture(scope="module")
def split(mini_layout):
    return json.loads((mini_layout.root / "mini_split.json").read_text())


@pytest.fixture(scope="module")
def report(mini_layout, split):
    return check_dataset(
        mini_layout, train_chain_ids=split["train"], val_chain_ids=split["validation"]
    )


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_report_counts_and_datasets(report, split):
    assert report.num_chains == 21 and report.num_alignment_entries == 21
    assert report.num_train_chains == len(split["train"]) == len(report.train_weights)
    assert [report.validation_dataset.chain_id(i) for i in range(3)] == split["validation"]
    assert report.validation_seeds == validation_seeds(report.validation_dataset)
    assert report.num_validated == 3 and sorted(report.validation_samples) == [0, 1, 2]
    assert not report.warnings and "3 validation chains" in report.summary()


def test_evaluation_reuses_the_checked_samples(report, monkeypatch):
    loader = report.validation_loader()
    assert isinstance(loader, CachedValidationLoader) and loader.indices() == [0, 1, 2]
    ds = report.validation_dataset
    fresh = {i: ds[(i, report.validation_seeds[i])] for i in range(3)}

    def no_preparation(item):  # the first evaluation must prepare nothing
        raise AssertionError(f"sample {item} prepared again")

    monkeypatch.setattr(type(ds), "__getitem__", lambda self, item: no_preparation(item))
    seen = dict(iter(loader))
    assert sorted(seen) == [0, 1, 2]
    for i, batch in seen.items():
        assert _same(batch, {k: v.unsqueeze(0) for k, v in fresh[i].items()})


def test_a_share_is_prepared_and_kept_for_its_rank(mini_layout, split, report):
    one = check_dataset(mini_layout, train_chain_ids=split["train"],
                        val_chain_ids=split["validation"], val_rank=1, val_world_size=2)
    assert one.num_validated == 1 and sorted(one.validation_samples) == [1]
    loader = one.validation_loader()
    assert loader.indices() == [1] and sorted(loader.cache) == [1]
    assert _same(loader.cache[1], report.validation_samples[1])
    # Another share's loader simply starts with an empty cache.
    assert report.validation_loader(rank=0, world_size=2).indices() == [0, 2]
    with pytest.raises(ValueError, match="share"):
        check_dataset(mini_layout, val_rank=2, val_world_size=2)


def test_without_keeping_or_preparing(mini_layout, split):
    kw = dict(train_chain_ids=split["train"], val_chain_ids=split["validation"])
    r = check_dataset(mini_layout, keep_validation_samples=False, **kw)
    assert r.num_validated == 3 and not r.validation_samples
    assert not r.validation_loader().cache
    r = check_dataset(mini_layout, prepare_validation=False, **kw)
    assert r.num_validated == 0


def test_worker_processes_prepare_the_same_samples(mini_layout, split, report):
    r = check_dataset(mini_layout, train_chain_ids=split["train"],
                      val_chain_ids=split["validation"], num_workers=2)
    assert sorted(r.validation_samples) == [0, 1, 2]
    for i in range(3):
        assert _same(r.validation_samples[i], report.validation_samples[i])


def test_unknown_validation_chain_is_named(mini_layout, split):
    with pytest.raises(DatasetCheckError) as err:
        check_dataset(mini_layout, train_chain_ids=split["train"], val_chain_ids=["9xyz_A"])
    assert err.value.chain == "9xyz_A" and err.value.path.endswith("chains.csv")
    assert isinstance(err.value, DataError) and len(err.value.failures) == 1


def test_chains_csv_consistency(mini_layout, tmp_path, split):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(mini_layout.root, root)
    csv = root / "pdb_mmcif" / "processed" / "chains.csv"
    df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    df.loc[3, "sequence_length"] = str(int(df.loc[3, "sequence_length"]) + 1)
    df = pd.concat([df, df.iloc[[5]]])  # a duplicate row
    df.to_csv(csv, index=False)
    with pytest.raises(DatasetCheckError) as err:
        check_dataset(root, train_chain_ids=split["train"], val_chain_ids=split["validation"])
    text = str(err.value)
    assert "row 4 (line 5), column 'sequence_length'" in text
    assert "row 22 (line 23), column 'pdb_chain_id': appears twice" in text
    assert err.value.path == str(csv)


def test_chains_csv_missing_values(tmp_path):
    header = ("pdb_chain_id,pdb_id,author_chain_id,mmcif_chain_ids,release_date,resolution,"
              "pdb_cluster_id,sequence_length,sequence\n")
    path = tmp_path / "chains.csv"
    path.write_text(header + "1abc_A,1abc,A,A,2000-01-01,,3,3,ACD\n"
                    "1abc_B,1abc,B,B,2000-01-01,nan,4,3,ACD\n")
    df = load_chains_csv(path)  # an empty or "nan" resolution is "unknown"
    assert df["resolution"].isna().all() and df["pdb_cluster_id"].tolist() == [3, 4]
    path.write_text(header + "1abc_A,1abc,A,A,2000-01-01,2.0,,3,ACD\n")
    with pytest.raises(DataError, match=r"row 1 \(line 2\), column 'pdb_cluster_id'") as err:
        load_chains_csv(path)
    assert err.value.chain == "1abc_A"
    path.write_bytes(header.encode() + b"\xff\xfe garbage\n")
    with pytest.raises(DataError, match="unreadable chains.csv"):
        load_chains_csv(path)
