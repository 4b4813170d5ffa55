"""Feature dicts to the device: the same values; on CUDA through pinned memory."""

from __future__ import annotations

import pytest
import torch

from scalefold.utils.transfer import tensor_to_device, to_device


def _feats():
    g = torch.Generator().manual_seed(0)
    full = torch.randn(3, 5, 4, generator=g)
    return {"a": torch.randint(0, 9, (2, 7), generator=g), "b": full[..., -1], "c": full}


def test_values_and_dtypes_kept_on_the_cpu():
    feats = _feats()
    out = to_device(feats, torch.device("cpu"))
    assert out.keys() == feats.keys()
    for k in feats:
        assert torch.equal(out[k], feats[k]) and out[k].dtype == feats[k].dtype
    one = tensor_to_device(feats["a"], torch.device("cpu"))
    assert torch.equal(one, feats["a"]) and one.dtype == feats["a"].dtype


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_copies_go_through_pinned_memory(monkeypatch):
    feats = _feats()
    pinned = []
    real = torch.Tensor.pin_memory
    monkeypatch.setattr(torch.Tensor, "pin_memory",
                        lambda self, *a: pinned.append(1) or real(self, *a))
    out = to_device(feats, torch.device("cuda"))
    torch.cuda.synchronize()
    assert len(pinned) == len(feats)  # the non-contiguous slice too
    for k in feats:
        assert out[k].is_cuda and torch.equal(out[k].cpu(), feats[k])
    again = to_device(out, torch.device("cuda"))  # already there: no host copy
    assert len(pinned) == len(feats) and all(again[k] is out[k] for k in out)
