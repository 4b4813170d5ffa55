"""The suite-wide hooks of tests/conftest.py that scripts/gpu_tests.sh relies on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _collected(tmp_path: Path, *targets: str, **env: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         *targets],
        cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return [line for line in proc.stdout.splitlines() if "::" in line]


def test_gpu_selection_and_done_list(tmp_path):
    target = "tests/utils/test_transfer.py"
    every = _collected(tmp_path, target)
    gpu = _collected(tmp_path, target, SCALEFOLD_GPU_TESTS="1")
    # the file's two tests skipped without CUDA, not its CPU tests
    assert len(gpu) == 2 and len(every) > len(gpu) and set(gpu) < set(every)
    done = tmp_path / "done.txt"
    done.write_text(f"# a comment\n{gpu[0]}\n\n")
    left = _collected(tmp_path, target, SCALEFOLD_GPU_TESTS="1",
                      SCALEFOLD_TESTS_DONE=str(done))
    assert left == gpu[1:]
    # the kernel tests (the `kern` fixture) count as GPU tests
    kern = _collected(tmp_path, "tests/kernels/test_optimizer.py", SCALEFOLD_GPU_TESTS="1")
    assert kern and all("test_optimizer.py::" in k for k in kern)


_FAKE_SUITE = '''
import pytest


@pytest.mark.parametrize("case", ["plain", "with space, and comma"])
def test_passes(case):
    pass


def test_fails():
    assert False


@pytest.mark.skip(reason="no GPU here")
def test_skipped():
    pass
'''


@pytest.mark.parametrize("workers", ["0", "2"])
def test_gpu_tests_script_records_each_outcome_by_node_id(tmp_path, workers):
    """scripts/gpu_tests.sh reads outcomes from pytest's -v lines in one process and from
    xdist's workers, parametrized ids with spaces included: the done list gains what
    passed or was skipped, the failed list what failed, and a carried node is not rerun."""
    suite = tmp_path / "tests"
    suite.mkdir()
    (suite / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    (suite / "test_fake.py").write_text(_FAKE_SUITE)
    (tmp_path / ".devsnap").mkdir()
    carried = "tests/test_fake.py::test_passes[plain]"
    (tmp_path / ".devsnap" / "gpu_tests_done.txt").write_text(carried + "\n")
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "OUT": str(out), "SCALEFOLD_GPU_TEST_WORKERS": workers,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_tests.sh"), "240",
                           "tests/test_fake.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    text = proc.stdout + proc.stderr
    assert ("-n 2" in text) == (workers == "2"), text
    assert (out / "gpu_tests_done.txt").read_text().splitlines() == [
        carried, "tests/test_fake.py::test_passes[with space, and comma]",
        "tests/test_fake.py::test_skipped"], text
    assert (out / "gpu_tests_failed.txt").read_text().splitlines() == [
        "tests/test_fake.py::test_fails"], text
    assert "1 passed, 1 failed this call; 3 done in all; complete, with failures" in text
