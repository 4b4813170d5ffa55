from __future__ import annotations

import gzip
import importlib.util
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from scalefold.data.layout import AlignmentDB, decompress_atoms, load_chains_csv
from scalefold.data.preprocess import parse_mmcif, preprocess_alignments, preprocess_mmcif

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("MDAnalysisTests") is None, reason="needs mdanalysistests"
)


def _mmcif_dir() -> Path:
    from scalefold.data.mini import structures_dir

    return structures_dir()


def test_parse_mmcif_matches_alphafold():
    mmcif_parsing = pytest.importorskip("alphafold.data.mmcif_parsing")
    templates = pytest.importorskip("alphafold.data.templates")
    text = gzip.open(_mmcif_dir() / "1BD2.cif.gz", "rt").read()
    ours = parse_mmcif(_mmcif_dir() / "1BD2.cif.gz")
    ref = mmcif_parsing.parse(file_id="1bd2", mmcif_string=text).mmcif_object
    assert ours["release_date"] == ref.header["release_date"]
    assert ours["resolution"] == pytest.approx(ref.header["resolution"])
    assert set(ours["sequences"]) == set(ref.chain_to_seqres)
    for chain, seq in ref.chain_to_seqres.items():
        assert ours["sequences"][chain] == seq
        pos, mask = templates._get_atom_positions(ref, chain, max_ca_ca_distance=150.0)
        np.testing.assert_array_equal(ours["atoms"][chain]["all_atom_mask"], mask.astype(bool))
        np.testing.assert_allclose(ours["atoms"][chain]["all_atom_positions"], pos, atol=1e-3)


def _raw_tree(tmp_path: Path) -> Path:
    raw = tmp_path / "raw"
    (raw / "pt").mkdir(parents=True)
    (raw / "bd").mkdir()
    (raw / "pt" / "5pti.cif.gz").write_bytes((_mmcif_dir() / "5PTI.cif.gz").read_bytes())
    (raw / "bd" / "1bd2.cif").write_text(gzip.open(_mmcif_dir() / "1BD2.cif.gz", "rt").read())
    good = (_mmcif_dir() / "3KPR.cif.gz").read_bytes()
    (raw / "kp").mkdir()
    (raw / "kp" / "3kpr.cif.gz").write_bytes(good[: len(good) // 3])  # truncated download
    return raw


def test_preprocess_mmcif_reports_bad_files_and_resumes(tmp_path):
    raw = _raw_tree(tmp_path)
    obsolete = tmp_path / "obsolete.dat"
    obsolete.write_text("OBSLTE    31-JUL-94 116L     216L\n")
    clusters = tmp_path / "clusters.txt"
    clusters.write_text("1BD2_1 5PTI_1\n1BD2_2\n")
    out = tmp_path / "processed"
    report = preprocess_mmcif(raw, out, obsolete, clusters, workers=2)
    assert report.total == 3 and report.succeeded == 2
    assert list(report.errors) == [str(raw / "kp" / "3kpr.cif.gz")]
    assert "3kpr.cif.gz" in report.summary() and "failed: 1" in report.summary()
    chains = load_chains_csv(out / "chains.csv")
    by_id = chains.set_index("pdb_chain_id")
    assert set(chains["pdb_id"]) == {"5pti", "1bd2"}
    assert by_id.loc["5pti_A", "pdb_cluster_id"] == by_id.loc["1bd2_A", "pdb_cluster_id"] == 0
    assert (
        by_id.loc["1bd2_B", "pdb_cluster_id"] == 1 and by_id.loc["1bd2_C", "pdb_cluster_id"] == -1
    )
    with open(out / "dicts" / "pt", "rb") as f:
        record = pickle.load(f)["5pti"]
    blob, shape = record["atoms"]["A"]["all_atom_positions"]
    assert isinstance(blob, bytes) and shape == (58, 37, 3)
    assert decompress_atoms(record["atoms"])["A"]["all_atom_mask"].any()
    assert (out / "obsolete.dat").read_text().startswith("OBSLTE")

    mtime = (out / "dicts" / "pt").stat().st_mtime_ns
    again = preprocess_mmcif(raw, out, obsolete, clusters, workers=1)
    assert again.skipped_done == 3 and (out / "dicts" / "pt").stat().st_mtime_ns == mtime
    assert list(again.errors) == list(report.errors)


def test_preprocess_alignments_round_trip(tmp_path):
    src = tmp_path / "pdb"
    for chain, text in (("1abc_A", ">q\nACDE\n"), ("2xyz_B", ">q\nGGG\n")):
        (src / chain / "a3m").mkdir(parents=True)
        (src / chain / "a3m" / "uniref90_hits.a3m").write_text(text)
        (src / chain / "hhr").mkdir()
        (src / chain / "hhr" / "pdb70_hits.hhr").write_text(f"hits of {chain}\n")
    dups = tmp_path / "duplicate_pdb_chains.txt"
    dups.write_text("1abc_A 1abc_C\n2xyz_B\n")
    out = tmp_path / "pdb_alignments"
    report = preprocess_alignments(src, out, num_shards=3, duplicates_file=dups, workers=1)
    assert report.succeeded == 2 and not report.errors
    db = AlignmentDB(out)
    assert set(json.loads((out / "super.index").read_text())) == {"1abc_A", "1abc_C", "2xyz_B"}
    assert db.read("1abc_C") == {
        "pdb70_hits.hhr": "hits of 1abc_A\n",
        "uniref90_hits.a3m": ">q\nACDE\n",
    }
    assert db.read("2xyz_B")["uniref90_hits.a3m"] == ">q\nGGG\n"
    again = preprocess_alignments(src, out, num_shards=3, duplicates_file=dups, workers=1)
    assert again.skipped_done == 2 and AlignmentDB(out).read("1abc_A") == db.read("1abc_A")
