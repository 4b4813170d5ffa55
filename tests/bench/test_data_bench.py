"""`scalefold bench data prep|loaders` at tiny settings on the CPU (the CI path)."""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest

from scalefold.bench.data import LoaderBenchConfig, skewed_times
from scalefold.cli import main


@pytest.fixture(scope="module")
def mini_dir(tmp_path_factory):
    if importlib.util.find_spec("MDAnalysisTests") is None:
        pytest.skip("the PyPI package mdanalysistests ships the mini dataset's structures")
    if shutil.which("kalign") is None:
        pytest.skip("kalign (Debian package 'kalign') is needed for the mini dataset")
    from scalefold.data.mini import build_mini

    root = tmp_path_factory.mktemp("mini")
    build_mini(root)
    return root


def test_bench_data_prep_tiny(mini_dir, tmp_path, capsys):
    out = tmp_path / "prep.json"
    rc = main(["bench", "data", "prep", "--data-dir", str(mini_dir), "--chains",
               "5pti_A,1bd2_A", "--seeds", "2", "--deep-rows", "300", "--deep-chains", "1",
               "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "| mini | 2 |" in text and "| deep 300 | 1 |" in text and "ground_truth" in text
    data = json.loads(out.read_text())
    cases = {(c["name"], c["chain"]): c for c in data["cases"]}
    deep = cases[("deep 300", "1bd2_A")]  # the longer of the two chains
    assert deep["msa_rows"] > 300 > cases[("mini", "1bd2_A")]["msa_rows"]
    for case in cases.values():
        assert len(case["times"]) == 2 and all(t > 0 for t in case["times"])
        # The stage timers partition each sample's time ("other" is the remainder).
        for i, t in enumerate(case["times"]):
            assert sum(v[i] for v in case["stages"].values()) == pytest.approx(t)
            assert case["stages"]["other"][i] > -1e-6 and case["stages"]["msa"][i] > 0


def test_bench_data_prep_lengthened_deep_case(mini_dir, tmp_path, capsys):
    """--deep-residues: the deep case's chain repeated to that length, MSA to match."""
    out = tmp_path / "prep.json"
    rc = main(["bench", "data", "prep", "--data-dir", str(mini_dir), "--chains", "1bd2_A",
               "--seeds", "1", "--deep-rows", "300", "--deep-chains", "1",
               "--deep-residues", "500", "--no-breakdown", "--json", str(out)])
    assert rc == 0
    assert "| deep 300 | 1 | 500-500 |" in capsys.readouterr().out
    cases = {c["name"]: c for c in json.loads(out.read_text())["cases"]}
    assert cases["mini"]["residues"] < 500 and cases["deep 300"]["msa_rows"] > 300


def test_stage_clock_restores_the_pipeline(mini_dir):
    from scalefold.bench.data import _StageClock
    from scalefold.data import features
    from scalefold.data.dataset import training_dataset
    from scalefold.data.layout import DataLayout

    ds, _ = training_dataset(DataLayout(mini_dir), chain_ids=["5pti_A"])
    before = features._msa_iteration
    with _StageClock(ds).installed():
        assert features._msa_iteration is not before
    assert features._msa_iteration is before and "read" not in vars(ds.alignments)


def test_bench_data_loaders_tiny(tmp_path, capsys):
    out = tmp_path / "loaders.json"
    # Inline preparation (0 workers): spawning worker processes costs seconds per loader;
    # tests/data/test_loaders.py covers the worker path.
    rc = main(["bench", "data", "loaders", "--samples", "16", "--num-workers", "0",
               "--window", "4", "--gpu-step-ms", "10", "--median-ms", "5",
               "--tail-fraction", "0.2", "--repeats", "1", "--settle-s", "0",
               "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "| PT |" in text and "| PQ |" in text and "PQ/PT steps/s" in text
    runs = json.loads(out.read_text())["runs"]
    assert sorted(r["loader"] for r in runs) == ["PQ", "PT"]
    for r in runs:  # the first batch is the start-up, not a step of the measurement
        assert r["steps"] == 16 and 0 <= r["idle"] < 1 and r["steps_per_s"] > 0


def test_skewed_times_have_a_long_tail():
    cfg = LoaderBenchConfig(samples=4000, median_s=0.05)
    times = sorted(skewed_times(cfg, 0))
    median = times[len(times) // 2]
    assert 0.04 < median < 0.06
    slow = [t for t in times if t >= 20 * 0.05]
    assert 0.03 < len(slow) / len(times) < 0.07 and max(times) <= 50 * 0.05
