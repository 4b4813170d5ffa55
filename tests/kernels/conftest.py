"""Kernel modules for the tests: native Triton on a GPU, the interpreter on a CPU.

Triton fixes interpreter mode when it is first imported (its own `tl.sum` & co. are jit
functions), so on a CPU the kernel tests run in a subprocess started with
TRITON_INTERPRET=1 (see test_kernels_in_triton_interpreter); in the parent they skip.
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
    import scalefold.kernels.attention as attention
    import scalefold.kernels.layer_norm as layer_norm

    return SimpleNamespace(attention=attention, layer_norm=layer_norm)
