from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest

from scalefold.data.layout import (
    AlignmentDB,
    DataError,
    MmcifDictStore,
    compress_atoms,
    decompress_atoms,
    load_chains_csv,
    load_obsolete,
)


def test_chains_csv_keeps_ids_as_strings(tmp_path):
    path = tmp_path / "chains.csv"
    path.write_text(
        "pdb_chain_id,pdb_id,author_chain_id,mmcif_chain_ids,release_date,resolution,pdb_cluster_id,sequence_length,sequence\n"
        "1e10_NA,1e10,NA,A;B,2001-01-01,,5,3,ACD\n"
        "2abc_1,2abc,1,C,2001-01-02,2.5,-1,2,GG\n"
    )
    df = load_chains_csv(path)
    assert df["pdb_id"].tolist() == ["1e10", "2abc"]
    assert df["author_chain_id"].tolist() == ["NA", "1"]
    assert np.isnan(df["resolution"][0]) and df["resolution"][1] == 2.5
    assert df["pdb_cluster_id"].dtype == np.int64


def test_atoms_round_trip_and_store(tmp_path):
    rng = np.random.default_rng(0)
    pos = rng.normal(size=(5, 37, 3)).astype(np.float32)
    mask = rng.random((5, 37)) > 0.5
    packed = compress_atoms({"A": {"all_atom_positions": pos, "all_atom_mask": mask}})
    blob, shape = packed["A"]["all_atom_positions"]
    assert isinstance(blob, bytes) and shape == (5, 37, 3)
    back = decompress_atoms(packed)["A"]
    np.testing.assert_array_equal(back["all_atom_positions"], pos)
    np.testing.assert_array_equal(back["all_atom_mask"], mask)

    empty = compress_atoms({"B": {"all_atom_positions": pos, "all_atom_mask": np.zeros_like(mask)}})
    record = {
        "pdb_id": "1abc",
        "sequences": {"A": "AAAAA", "B": "AAAAA"},
        "atoms": {**packed, **empty},
    }
    dicts = tmp_path / "dicts"
    dicts.mkdir()
    (dicts / "ab").write_bytes(pickle.dumps({"1abc": record}))
    store = MmcifDictStore(dicts)
    _, p, m = store.chain_atoms("1abc", "A")
    np.testing.assert_array_equal(p, pos)
    with pytest.raises(
        DataError, match=r"1abc_B.*dicts/ab.*no resolved atoms|no resolved atoms"
    ) as err:
        store.chain_atoms("1abc", "B")
    assert err.value.chain == "1abc_B" and err.value.path.endswith("ab")
    with pytest.raises(DataError, match="not found"):
        store.get("9zzz")


def test_obsolete(tmp_path):
    path = tmp_path / "obsolete.dat"
    path.write_text(
        " LIST OF OBSOLETE\nOBSLTE    31-JUL-94 116L     216L\nOBSLTE    01-JAN-99 1XYZ\n"
    )
    assert load_obsolete(path) == {"116l": "216l"}


def _alignment_db(tmp_path):
    a3m, hhr = b">q\nACD\n", b"No 1\n"
    (tmp_path / "0.db").write_bytes(a3m + hhr)
    index = {
        "1abc_A": {
            "db": "0.db",
            "files": [["uniref90_hits.a3m", 0, len(a3m)], ["pdb70_hits.hhr", len(a3m), len(hhr)]],
        },
        "1abc_B": {"db": "0.db", "files": [["uniref90_hits.a3m", 4, 100]]},
    }
    (tmp_path / "super.index").write_text(json.dumps(index))
    return AlignmentDB(tmp_path)


def test_alignment_db_reads_entries(tmp_path):
    db = _alignment_db(tmp_path)
    files = db.read("1abc_A")
    assert files == {"uniref90_hits.a3m": ">q\nACD\n", "pdb70_hits.hhr": "No 1\n"}


def test_alignment_db_errors_name_chain_and_file(tmp_path):
    db = _alignment_db(tmp_path)
    with pytest.raises(DataError) as err:
        db.read("2xyz_A")
    assert err.value.chain == "2xyz_A" and err.value.path.endswith("super.index")
    with pytest.raises(DataError, match="past the end") as err:
        db.read("1abc_B")
    assert err.value.chain == "1abc_B" and err.value.path.endswith("0.db")


def test_mini_layout_reads(mini_layout):
    chains = load_chains_csv(mini_layout.chains_csv)
    assert len(chains) == 21 and set(chains["pdb_id"]) == {"5pti", "1bd2", "3kpr", "3pwp"}
    db = AlignmentDB(mini_layout.alignments_dir)
    assert set(chains["pdb_chain_id"]) <= set(db.index)
    files = db.read("5pti_A")
    assert "SYNTHETIC" in files["uniref90_hits.a3m"] and set(files) >= {
        "mgnify_hits.a3m",
        "pdb70_hits.hhr",
    }
    assert isinstance(pd.read_csv(mini_layout.chains_csv), pd.DataFrame)
