"""`scalefold data preprocess* / check` on a tiny tree in the reference's download layout
(real mmCIF files, alignments made as the mini dataset makes them: download_tree.py), and
a 2-step CPU training run on the layout they build."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from scalefold.data import commands
from scalefold.data.commands import add_data_commands
from scalefold.data.layout import AlignmentDB, DataLayout, MmcifDictStore, load_chains_csv

from .download_tree import TRAIN, VALIDATION, build_download_tree

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("MDAnalysisTests") is None,
                       reason="needs mdanalysistests (real mmCIF files)"),
    pytest.mark.skipif(shutil.which("kalign") is None, reason="needs kalign"),
]

SPLIT = ["--train-chain-ids", ",".join(TRAIN), "--val-chain-ids", ",".join(VALIDATION)]


def _parser() -> argparse.ArgumentParser:
    """`scalefold data` as cli.build_parser makes it, with only our commands."""
    parser = argparse.ArgumentParser(prog="scalefold data")
    add_data_commands(parser.add_subparsers(dest="data_command", required=True))
    return parser


def _cli_has_our_commands() -> bool:
    from scalefold import cli

    try:
        cli.build_parser().parse_args(["data", "check", "x"])
    except SystemExit:
        return False
    return True


def run(argv: list[str], via_cli: bool = False) -> tuple[int, str]:
    """Exit code and stdout of `scalefold data ARGV` (through scalefold.cli.main when
    asked, else through a parser built by add_data_commands)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        if via_cli:
            from scalefold import cli

            code = cli.main(["data", *argv])
        else:
            args = _parser().parse_args(argv)
            code = args.func(args)
    return code, out.getvalue()


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return build_download_tree(tmp_path_factory.mktemp("download"))


@pytest.fixture(scope="module")
def built(tree, tmp_path_factory) -> tuple[Path, int, str]:
    datadir = tmp_path_factory.mktemp("datadir")
    code, out = run(["preprocess", str(tree), str(datadir), "--workers", "2", "--no-progress"])
    return datadir, code, out


def test_help_explains_inputs_and_outputs(capsys):
    for command, words in (
        ("preprocess-mmcif", ["raw/", "chains.csv", "dicts/", "obsolete.dat", "--workers",
                              "resumable", "CSV"]),
        ("preprocess-alignments", ["pdb/", "duplicate_pdb_chains.txt", "super.index", ".db"]),
        ("preprocess", ["pdb_mmcif/original", "open_protein_set/original"]),
        ("check", ["chains.csv", "validation", "coverage", "Exit status", "--workers"]),
    ):
        with pytest.raises(SystemExit) as exit_:
            _parser().parse_args([command, "--help"])
        assert exit_.value.code == 0
        text = " ".join(capsys.readouterr().out.split())
        for w in words:
            assert w in text, (command, w)


def test_preprocess_builds_the_layout_from_the_download_tree(built, tree):
    datadir, code, out = built
    assert code == 0, out
    layout = DataLayout(datadir)
    layout.check()  # every required file and folder
    chains = load_chains_csv(layout.chains_csv)
    assert len(chains) == 14 and set(chains["pdb_id"]) == {"5pti", "1bd2", "3pwp", "1yjp", "7etn"}
    assert (chains["pdb_cluster_id"] >= 0).all()
    by_id = chains.set_index("pdb_chain_id")
    assert by_id.loc["1bd2_A", "pdb_cluster_id"] == by_id.loc["3pwp_A", "pdb_cluster_id"]
    assert layout.obsolete_dat.read_text().startswith(" LIST OF OBSOLETE")
    # The truncated download is skipped, named in the summary and in the CSV.
    assert "1 skipped" in out and "3kpr.cif.gz" in out
    skipped = pd.read_csv(layout.pdb_mmcif_dir / commands.MMCIF_SKIPPED_CSV)
    assert [Path(f).name for f in skipped["file"]] == ["3kpr.cif.gz"]
    assert "EOFError" in skipped["reason"][0]
    # Alignments: one entry per chain; identical chains share their folder's files.
    db = AlignmentDB(layout.alignments_dir)
    assert set(db.index) == set(chains["pdb_chain_id"])
    assert db.index["3pwp_A"] == db.index["1bd2_A"]
    files = db.read("3pwp_B")
    assert sorted(files) == ["bfd_uniclust_hits.a3m", "mgnify_hits.a3m", "pdb70_hits.hhr",
                             "uniref90_hits.a3m"]
    src = tree / "open_protein_set/original/pdb/1bd2_B/a3m/uniref90_hits.a3m"
    assert files["uniref90_hits.a3m"] == src.read_text()
    assert MmcifDictStore(layout.dicts_dir).get("3pwp")["atoms"]["B"]["all_atom_mask"].any()
    assert not list(datadir.rglob("*.tmp"))  # atomic writes leave no temporary file


def test_preprocess_resumes_after_an_interruption(built, tree, tmp_path):
    datadir, _, _ = built
    copy = tmp_path / "copy"
    shutil.copytree(datadir, copy)
    layout = DataLayout(copy)
    # An interrupted run: one dicts shard written without its marker, one alignment shard
    # missing, a temporary file left behind.
    (layout.pdb_mmcif_dir / "dicts_logs" / "pw.json").unlink()
    (layout.alignments_dir / "0.db").unlink()
    (layout.dicts_dir / "pw.123.tmp").write_bytes(b"partial")
    before = {p: p.stat().st_mtime_ns for p in layout.dicts_dir.iterdir()}
    code, out = run(["preprocess", str(tree), str(copy), "--workers", "1", "--no-progress"])
    assert code == 0, out
    assert "mmCIF done" in out and "5 already done (resumed)" in out  # 6 files, pw redone
    assert (layout.dicts_dir / "bd").stat().st_mtime_ns == before[layout.dicts_dir / "bd"]
    assert (layout.dicts_dir / "pw").stat().st_mtime_ns != before[layout.dicts_dir / "pw"]
    # Same outputs as the uninterrupted run.
    for rel in ("pdb_mmcif/processed/chains.csv", "pdb_mmcif/processed/dicts/pw",
                "open_protein_set/processed/pdb_alignments/super.index",
                "open_protein_set/processed/pdb_alignments/0.db"):
        assert (copy / rel).read_bytes() == (datadir / rel).read_bytes(), rel


def test_check_passes_on_the_built_layout(built):
    datadir, _, _ = built
    code, out = run(["check", str(datadir), *SPLIT, "--read-alignments", "--workers", "2",
                     "--no-progress", "--json", str(datadir / "check.json")])
    assert code == 0, out
    assert "result: OK" in out and "FAULTS" not in out
    report = json.loads((datadir / "check.json").read_text())
    funnel = dict(report["funnel"])
    # 14 chains; 7ETN (2 chains) released 2022 is after the training cut-off.
    assert funnel["rows of chains.csv"] == 14
    assert funnel["released 1900-01-01..2021-09-16"] == 12
    assert funnel["with an alignment entry (training set)"] == len(TRAIN)
    assert "released 1900-01-01..2021-09-16" in out
    assert "prepared once without fault: 2" in out
    assert "alignment entries read and parsed: 14" in out and "chains.csv: 14/14" in out
    assert report["ok"] and report["files"]["dicts entries read"] == 5


def test_check_runs_its_file_phases_in_worker_processes(built, monkeypatch):
    datadir, _, _ = built
    monkeypatch.setattr(commands, "MIN_PARALLEL_JOBS", 1)
    result = commands.check_datadir(datadir, workers=2, train_chain_ids=TRAIN,
                                    val_chain_ids=VALIDATION, read_alignments=True,
                                    progress=False)
    assert not result.faults and result.files["alignment entries read and parsed"] == 14


def test_check_fails_on_a_corrupted_copy_and_names_file_and_chain(built, tmp_path):
    datadir, _, _ = built
    copy = tmp_path / "bad"
    shutil.copytree(datadir, copy)
    layout = DataLayout(copy)
    shard = layout.dicts_dir / "bd"  # 1bd2: training chains
    shard.write_bytes(shard.read_bytes()[:100])  # truncated
    db = AlignmentDB(layout.alignments_dir)
    val_shard = layout.alignments_dir / db.index["3pwp_C"]["db"]
    val_shard.write_bytes(b"")  # the validation chain's bytes are gone
    code, out = run(["check", str(copy), *SPLIT, "--no-progress"])
    assert code == 1, out
    assert "result: FAILED" in out and "FAULTS" in out
    faults = out.split("FAULTS", 1)[1]
    assert f"file {shard}" in faults and "unreadable (truncated or corrupt pickle)" in faults
    assert f"file {val_shard}" in faults and "chain 3pwp_C" in faults
    # A missing layout piece is reported, not raised.
    layout.obsolete_dat.unlink()
    code, out = run(["check", str(copy), *SPLIT, "--no-progress"])
    assert code == 1 and "obsolete.dat" in out and "[layout]" in out


def test_check_without_validation_chains_fails(built):
    datadir, _, _ = built
    # The default validation set is the CAMEO selection: none of the tree's chains.
    code, out = run(["check", str(datadir), "--train-chain-ids", ",".join(TRAIN),
                     "--no-read-dicts", "--no-progress"])
    assert code == 1 and "no validation chain selected" in out
    assert "CAMEO targets in the window: 183" in out


def test_bad_input_is_a_message_and_exit_status_2(tmp_path, capsys):
    (tmp_path / "raw").mkdir()
    code, _ = run(["preprocess-mmcif", str(tmp_path), str(tmp_path / "out")])
    assert code == 2 and "obsolete.dat" in capsys.readouterr().err
    code, _ = run(["preprocess", str(tmp_path), str(tmp_path / "out")])
    assert code == 2


def test_train_two_steps_on_the_built_layout(built, tmp_path, capsys):
    from scalefold import cli

    datadir, _, _ = built
    code = cli.main([
        "train", "--data-dir", str(datadir), "--preset", "tiny", "--device", "cpu",
        "--crop-size", "16", "--max-msa-clusters", "4", "--max-extra-msa", "4",
        "--max-templates", "1", "--num-recycling-iters", "0", "--num-workers", "0",
        "--num-train-iters", "2", "--val-every-iters", "2", "--output-dir", str(tmp_path),
        "--train-chain-ids", ",".join(TRAIN), "--val-chain-ids", ",".join(VALIDATION),
        "--no-progress",
    ])
    out = capsys.readouterr().out
    assert code in (0, 3), out  # 3: the target lDDT not reached, as expected in 2 steps
    assert "done: iterations=2" in out


@pytest.mark.skipif(not _cli_has_our_commands(),
                    reason="scalefold.cli does not call add_data_commands yet")
def test_through_scalefold_cli_main(built):
    datadir, _, _ = built
    code, out = run(["check", str(datadir), *SPLIT, "--no-progress"], via_cli=True)
    assert code == 0 and "result: OK" in out, out
