"""`scalefold plan` from the command line, on the shipped profile."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scalefold.cli import main

SYSTEMS = Path(__file__).resolve().parents[2] / "systems"


def test_plan_default_prints_a_marked_prediction(capsys, tmp_path):
    assert main(["plan", "--trials", "200", "--json", str(tmp_path / "p.json")]) == 0
    out = capsys.readouterr().out
    assert "PREDICTION" in out and "olympic mean of 10 runs" in out
    data = json.loads((tmp_path / "p.json").read_text())
    assert data["prediction"] is True and data["shape"]["dap_size"] == 8
    assert data["olympic_mean_min"] > 0


def test_plan_from_a_system_description_and_a_refused_batch(capsys):
    assert main(["plan", "--cluster", str(SYSTEMS / "dgxh100_n64.json"), "--dap-size", "2",
                 "--eval-ranks", "0", "--trials", "100"]) == 0
    assert "64 nodes" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="outside the reference convergence points"):
        main(["plan", "--global-batch", "512"])
    assert main(["plan", "--global-batch", "512", "--samples-to-target", "200000",
                 "--trials", "50"]) == 0


def test_plan_pretraining_scenario(capsys):
    assert main(["plan", "--lr-schedule", "alphafold", "--global-batch", "128"]) == 0
    out = capsys.readouterr().out
    assert "78125 steps" in out and "hours" in out


def test_plan_sweep_writes_table_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    # A fresh process, as a user runs it (and matplotlib's backend stays out of this one).
    res = subprocess.run(
        [sys.executable, "-m", "scalefold.cli", "plan", "--sweep", "--sweep-nodes", "16,260",
         "--out", str(tmp_path), "--trials", "100"],
        capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    rows = (tmp_path / "sweep.csv").read_text().splitlines()
    assert rows[0].startswith("cluster,nodes,gpus,dap_size")
    assert len(rows) == 1 + 2 * 2 * 4
    assert (tmp_path / "sweep.png").stat().st_size > 10_000
    assert "faster than profiled" in res.stdout
