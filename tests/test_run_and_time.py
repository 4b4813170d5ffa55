"""The README's main command end to end: ./run_and_time.sh with no configuration trains
the embedded default to its target, prints the RESULT line, and its MLPerf log passes
the official compliance checker and this repository's compliance command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scalefold.mlperf import parse_log, run_compliance_checker

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_run_and_time_embedded_default(tmp_path):
    env = dict(os.environ, SCALEFOLD_NO_SETUP="1", SEED="20261129", LOGDIR=str(tmp_path),
               RUNDIR=str(tmp_path / "runs"),
               EXP_ID="1", PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    env.pop("DATADIR", None)
    proc = subprocess.run(["bash", "run_and_time.sh"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=1800, check=False)
    # Kept with pytest's temporary directories, for the record of a real CPU run.
    (tmp_path / "run_and_time.out").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT,OPENFOLD_HPC,")]
    assert len(result) == 1 and result[0].split(",")[2] == "20261129"
    mllog = [ln for ln in proc.stdout.splitlines() if ln.startswith(":::MLLOG")]
    # The results tree layout the compliance command reads (a single run: --partial).
    log = tmp_path / "results" / "cpu_2core" / "strong" / "openfold" / "result_0.txt"
    log.parent.mkdir(parents=True)
    log.write_text("\n".join(mllog) + "\n")
    checked = run_compliance_checker(log)
    assert checked.ok, checked.output[-3000:]
    lines = parse_log(log)
    accuracies = [ln.value for ln in lines if ln.key == "eval_accuracy"]
    assert accuracies and accuracies[-1] >= 0.8 and max(accuracies[:-1], default=0) < 0.8
    stop = [ln for ln in lines if ln.key == "run_stop"]
    assert stop[0].metadata["status"] == "success"
    tree = subprocess.run([sys.executable, "compliance/check.py", str(tmp_path / "results"),
                           "--partial"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert tree.returncode == 0, tree.stdout[-3000:] + tree.stderr[-3000:]
