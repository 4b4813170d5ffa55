"""The interpreter's bf16 arithmetic (`tests/kernels/interpreter_bf16.py`): its conversions
against PyTorch's, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("triton")

from tests.kernels.interpreter_bf16 import bf16_to_f32, f32_to_bf16  # noqa: E402


def test_conversions_round_to_nearest_even_as_pytorch_does():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(4096, generator=g) * 10.0 ** torch.randint(-30, 30, (4096,),
                                                                          generator=g),
                   torch.tensor([0.0, -0.0, 1.0, float("inf"), -float("inf"), 3e38, 1e-40,
                                 1.00390625, 1.01171875, -1e9])])
    want = x.to(torch.bfloat16)
    got = f32_to_bf16(x.numpy())
    assert np.array_equal(got, want.view(torch.int16).numpy().view(np.uint16))
    assert np.array_equal(bf16_to_f32(got), want.float().numpy())
    nan = f32_to_bf16(np.array([np.nan], dtype=np.float32))
    assert np.isnan(bf16_to_f32(nan)).all()
