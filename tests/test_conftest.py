"""The suite-wide hooks of tests/conftest.py that scripts/gpu_tests.sh relies on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
