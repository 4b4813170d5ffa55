"""Kernel modules for the tests: native Triton on a GPU, the interpreter on a CPU.

Triton fixes interpreter mode when it is first imported (its own `tl.sum` & co. are jit
functions), so on a CPU the kernel tests run in a subprocess started with
TRITON_INTERPRET=1 (see test_kernels_in_triton_interpreter); in the parent they skip.
There the interpreter computes bf16 through float32 (`interpreter_bf16.patch_bf16`).
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("triton")


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@pytest.fixture(scope="session")
def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture(scope="session")
def kern(device):
    if device.type != "cuda" and not interpreting():
        pytest.skip("CPU: runs inside the TRITON_INTERPRET=1 subprocess test")
    if interpreting():
        from tests.kernels.interpreter_bf16 import patch_bf16

        patch_bf16()
    import scalefold.kernels.attention as attention
    import scalefold.kernels.layer_norm as layer_norm

    return SimpleNamespace(attention=attention, layer_norm=layer_norm)


def rerun_in_interpreter(test_file: str, selection: str) -> None:
    """CPU: rerun the tests of `test_file` that `-k selection` picks in a fresh process
    under TRITON_INTERPRET=1 (see the module docstring); skips where kernels run natively
    or this already is the interpreter run."""
    import subprocess
    import sys

    if torch.cuda.is_available() or interpreting():
        pytest.skip("kernels run natively (GPU) or this is already the interpreter run")
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test_file,
         "-k", selection],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout.splitlines()[-1]
