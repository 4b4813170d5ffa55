"""Data faults (docs/FAULTS.md): each test corrupts one file of a copy of the mini dataset
and checks the outcome: the dataset check (run before run_start) raises a DataError naming
the file and the chain, or the training loader skips the bad sample with a logged warning
and loses nothing else, or (empty / missing MSAs) the sample is built as the MLPerf
reference builds it.

The dataset check is imported inside the tests, so that the loader tests also run
against a tree without it.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from scalefold.data.dataset import training_dataset
from scalefold.data.layout import DataError, load_chains_csv
from scalefold.data.loaders import InOrderLoader, LoaderConfig
from scalefold.data.selection import RecyclingSchedule

BAD_TRAIN = "5pti_A"  # shard 3.db, 58 residues
GOOD_TRAIN = ("1bd2_B", "3kpr_B", "1bd2_C")  # small chains: fast to prepare
BAD_VAL = "3pwp_B"
A3M = "uniref90_hits.a3m"
MSA_NAMES = {"uniref90_hits.a3m", "bfd_uniclust_hits.a3m", "mgnify_hits.a3m"}
GARBAGE = bytes(range(128, 256))  # not UTF-8


def check(damaged, **kwargs):
    from scalefold.data import check_dataset

    split = damaged.split
    return check_dataset(
        damaged.layout, train_chain_ids=split["train"], val_chain_ids=split["validation"],
        **kwargs,
    )


def check_fails(damaged):
    from scalefold.data import DatasetCheckError

    with pytest.raises(DatasetCheckError) as err:
        check(damaged)
    return err.value


def train_with_one_bad_sample(damaged, caplog, bad=BAD_TRAIN):
    """The training loader over [good, bad, good, good], 3 batches of one sample."""
    ds, _ = training_dataset(damaged.layout, chain_ids=damaged.split["train"])
    index = {ds.chain_id(i): i for i in range(len(ds))}
    chains = [GOOD_TRAIN[0], bad, GOOD_TRAIN[1], GOOD_TRAIN[2]]
    pairs = [(index[c], 100 + k) for k, c in enumerate(chains)]
    loader = InOrderLoader(
        ds, pairs, RecyclingSchedule(seed=0),
        LoaderConfig(batch_size=1, num_workers=0, num_batches=3),
    )
    with caplog.at_level(logging.WARNING, logger="scalefold.data"):
        batches = list(loader)
    # Nothing else lost: every good sample trained, in order, with its features.
    assert [b.positions for b in batches] == [[0], [2], [3]]
    assert loader.consumed == [0, 2, 3]
    assert [p for p, _ in loader.skipped] == [1]
    for b, chain in zip(batches, [GOOD_TRAIN[0], *GOOD_TRAIN[1:]]):
        n = int(ds.records[index[chain]]["sequence_length"])
        assert int(b.features["seq_length"][0, 0]) == n
    message = loader.skipped[0][1]
    warned = [r.getMessage() for r in caplog.records if "skipping sample" in r.getMessage()]
    assert len(warned) == 1 and message in warned[0]
    return message


# --------------------------------------------------------------------------- baseline


def test_pristine_copy_passes_the_check(damaged):
    report = check(damaged)
    assert report.num_val_chains == 3 and report.num_validated == 3
    assert report.num_train_chains == len(damaged.split["train"]) and not report.warnings


# --------------------------------------------------------------------------- layout


@pytest.mark.parametrize(
    "piece",
    ["pdb_mmcif/processed/chains.csv", "pdb_mmcif/processed/dicts",
     "pdb_mmcif/processed/obsolete.dat", "open_protein_set/processed/pdb_alignments/super.index",
     "open_protein_set/processed/pdb_alignments/2.db"],
)
def test_missing_layout_piece_fails_the_check(damaged, piece):
    import shutil

    path = damaged.root / piece
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    err = check_fails(damaged)
    assert err.path == str(path) and str(path) in str(err)


# --------------------------------------------------------------------------- chains.csv


@pytest.mark.parametrize(
    "column, value",
    [("sequence_length", "abc"), ("pdb_cluster_id", "x1"), ("resolution", "2.5A"),
     ("release_date", "31/12/1998"), ("sequence_length", "12.5")],
)
def test_bad_chains_csv_cell_fails_the_check(damaged, column, value):
    row = damaged.set_cell("1bd2_D", column, value)
    err = check_fails(damaged)
    text = str(err)
    assert err.path == str(damaged.layout.chains_csv) and err.chain == "1bd2_D"
    assert f"row {row} (line {row + 1})" in text and repr(column) in text and value in text
    # The reader itself (used by every dataset builder) raises the same.
    with pytest.raises(DataError, match=f"column {column!r}"):
        load_chains_csv(damaged.layout.chains_csv)


# --------------------------------------------------------------------------- super.index


def test_truncated_super_index_fails_the_check(damaged):
    index = damaged.layout.super_index
    damaged.truncate(index, index.stat().st_size // 2)
    err = check_fails(damaged)
    assert err.path == str(index) and "super.index" in str(err)
    with pytest.raises(DataError) as err2:  # not a bare JSONDecodeError
        training_dataset(damaged.layout, chain_ids=damaged.split["train"])
    assert err2.value.path == str(index)


def test_malformed_index_entry_of_a_training_chain_is_a_logged_skip(damaged, caplog):
    index = damaged.index()
    del index[BAD_TRAIN]["files"]
    damaged.write_index(index)
    report = check(damaged)  # training chains are not fatal: counted, then skipped
    assert len(report.warnings) == 1 and BAD_TRAIN in report.warnings[0]
    message = train_with_one_bad_sample(damaged, caplog)
    assert BAD_TRAIN in message and "super.index" in message


# --------------------------------------------------------------------------- .a3m files


def test_garbage_a3m_of_a_training_chain_is_a_logged_skip(damaged, caplog):
    shard = damaged.overwrite_member(BAD_TRAIN, A3M, GARBAGE)
    message = train_with_one_bad_sample(damaged, caplog)
    assert f"chain {BAD_TRAIN}" in message and str(shard) in message and A3M in message
    check(damaged)  # training samples are checked lazily, not here


def test_garbage_a3m_of_a_validation_chain_fails_the_check(damaged):
    shard = damaged.overwrite_member(BAD_VAL, A3M, GARBAGE)
    err = check_fails(damaged)
    assert err.chain == BAD_VAL and err.path == str(shard) and A3M in str(err)
    assert len(err.failures) == 1  # the other validation chains are fine


def test_unparsable_a3m_of_a_training_chain_is_a_logged_skip(damaged, caplog):
    # Text, but not an alignment: rows of different widths.
    shard = damaged.replace_member(BAD_TRAIN, A3M, b">q\nACDEF\n>r\nAC\n")
    message = train_with_one_bad_sample(damaged, caplog)
    assert f"chain {BAD_TRAIN}" in message and str(shard) in message and A3M in message


def _other_protein_a3m(damaged, chain: str) -> bytes:
    n = len(damaged.index())  # any chain of another length will do
    assert n > 1
    length = {c: len(s) for c, s in zip(*_ids_and_sequences(damaged))}
    other = next(c for c in length if length[c] != length[chain] and length[c] > 20)
    return damaged.read_member(other, A3M)


def _ids_and_sequences(damaged):
    df = load_chains_csv(damaged.layout.chains_csv)
    return df["pdb_chain_id"].tolist(), df["sequence"].tolist()


def test_a3m_of_another_protein_in_a_training_chain_is_a_logged_skip(damaged, caplog):
    shard = damaged.replace_member(BAD_TRAIN, A3M, _other_protein_a3m(damaged, BAD_TRAIN))
    message = train_with_one_bad_sample(damaged, caplog)
    assert f"chain {BAD_TRAIN}" in message and str(shard) in message
    assert f"{A3M} has" in message and "aligned columns" in message


def test_a3m_of_another_protein_in_a_validation_chain_fails_the_check(damaged):
    shard = damaged.replace_member(BAD_VAL, A3M, _other_protein_a3m(damaged, BAD_VAL))
    err = check_fails(damaged)
    assert err.chain == BAD_VAL and err.path == str(shard) and "aligned columns" in str(err)


def test_garbage_hhr_of_a_training_chain_is_a_logged_skip(damaged, caplog):
    shard = damaged.replace_member(BAD_TRAIN, "pdb70_hits.hhr", b"No one\n>x\n")
    message = train_with_one_bad_sample(damaged, caplog)
    assert f"chain {BAD_TRAIN}" in message and str(shard) in message and "pdb70_hits.hhr" in message


# --------------------------------------------------------------------------- validation chains


def test_truncated_dicts_shard_of_validation_chains_fails_the_check(damaged):
    shard = damaged.layout.dicts_dir / "pw"  # 3pwp: every validation chain
    damaged.truncate(shard, shard.stat().st_size // 3)
    err = check_fails(damaged)
    assert err.path == str(shard)
    assert {f.chain for f in err.failures} == set(damaged.split["validation"])
    assert all(f.path == str(shard) for f in err.failures)


def test_garbage_dicts_shard_of_validation_chains_fails_the_check(damaged):
    shard = damaged.layout.dicts_dir / "pw"
    data = bytearray(shard.read_bytes())
    data[: len(data) // 2] = GARBAGE * (len(data) // 2 // len(GARBAGE)) + GARBAGE[
        : len(data) // 2 % len(GARBAGE)
    ]
    shard.write_bytes(bytes(data))
    err = check_fails(damaged)
    assert err.path == str(shard) and {f.chain for f in err.failures} == set(
        damaged.split["validation"]
    )


def test_alignment_byte_range_of_a_validation_chain_past_the_shard_fails_the_check(damaged):
    shard, offset, size = damaged.member(BAD_VAL, A3M)
    damaged.truncate(shard, offset + size // 2)
    err = check_fails(damaged)
    assert BAD_VAL in {f.chain for f in err.failures}
    bad = next(f for f in err.failures if f.chain == BAD_VAL)
    assert bad.path == str(shard) and "past the end" in str(bad)


# --------------------------------------------------------------------------- empty / no MSA


def _features(damaged, chain, seed=5):
    ds, _ = training_dataset(damaged.layout, chain_ids=damaged.split["train"])
    i = [ds.chain_id(k) for k in range(len(ds))].index(chain)
    return ds, i, ds[(i, seed)]


def test_empty_msa_file_is_passed_over_as_the_reference_does(damaged, caplog):
    chain = GOOD_TRAIN[0]
    pristine = _features(damaged, chain)[2]
    damaged.replace_member(chain, "mgnify_hits.a3m", b"")  # an empty file
    ds, i, with_empty = _features(damaged, chain)
    # The same chain built from its other two files only.
    entry = ds.alignments.index[chain]
    entry["files"] = [f for f in entry["files"] if f[0] != "mgnify_hits.a3m"]
    without = ds[(i, 5)]
    assert all(torch.equal(with_empty[k], without[k]) for k in without)
    assert not torch.equal(with_empty["msa_feat"], pristine["msa_feat"])  # mgnify mattered
    # Training over it skips nothing.
    with caplog.at_level(logging.WARNING, logger="scalefold.data"):
        loader = InOrderLoader(ds, [(i, 1), (i, 2)], RecyclingSchedule(seed=0),
                               LoaderConfig(batch_size=1, num_workers=0))
        assert len(list(loader)) == 2 and not loader.skipped
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("how", ["no MSA file", "all MSA files empty"])
def test_chain_without_msa_gets_the_query_only_msa(damaged, how):
    chain = GOOD_TRAIN[0]
    if how == "no MSA file":
        damaged.drop_members(chain, MSA_NAMES)
    else:
        for name in sorted(MSA_NAMES):
            damaged.replace_member(chain, name, b"")
    ds, i, feats = _features(damaged, chain)
    raw = ds.raw_chain(i, 5)
    seq = ds.records[i]["sequence"]
    from scalefold.data.msa import encode_rows

    assert raw.msa.shape == (1, len(seq)) and raw.deletion_matrix.shape == (1, len(seq))
    np.testing.assert_array_equal(raw.msa, encode_rows([seq]))
    assert not raw.deletion_matrix.any()
    # One cluster row (the query), no extra rows.
    assert feats["msa_mask"][:, : len(seq), 0].sum(dim=1).tolist()[:2] == [len(seq), 0.0]
    assert feats["extra_msa_mask"].sum() == 0


def test_validation_chain_without_msa_passes_the_check(damaged):
    damaged.drop_members(BAD_VAL, MSA_NAMES)
    report = check(damaged)
    assert report.num_validated == 3
