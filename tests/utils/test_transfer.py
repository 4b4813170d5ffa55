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


def test_input_copies_without_cuda_are_plain_copies():
    """Off CUDA the side stream is not made (the flag is a CUDA speed-up): plain copies."""
    from scalefold.utils.transfer import InputCopies

    feats = _feats()
    flag = torch.tensor([1.0, 0.0])
    for side in (False, True):
        copies = InputCopies(torch.device("cpu"), side_stream=side)
        assert copies.stream is None
        out, (flag_out,) = copies(feats, flag)
        assert out.keys() == feats.keys() and torch.equal(flag_out, flag)
        assert all(torch.equal(out[k], feats[k]) for k in feats)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_input_copies_overlap_the_running_step_and_are_read_after_them():
    """On the side stream the copies finish while the compute stream is still busy (a
    long sleep kernel queued before them stands for the previous step), and work queued on
    the compute stream after the call reads the copied values, each copy marked as used
    there."""
    from scalefold.utils.transfer import InputCopies

    device = torch.device("cuda")
    feats = {"x": torch.randn(64, 1024, 256), "y": torch.arange(10)}
    flag = torch.tensor([1.0])
    copies = InputCopies(device, side_stream=True)
    torch.cuda.synchronize()
    torch.cuda._sleep(2_000_000_000)  # ~1 s of the compute stream
    busy = torch.cuda.Event()
    busy.record()
    out, (flag_out,) = copies(feats, flag)
    copied = torch.cuda.Event()
    copied.record(copies.stream)
    copied.synchronize()
    assert not busy.query()  # the copies did not wait for the running "step"
    read = {k: v.clone() for k, v in out.items()}  # on the compute stream, after the sleep
    flag_read = flag_out.clone()
    torch.cuda.synchronize()
    assert all(torch.equal(read[k].cpu(), feats[k]) for k in feats)
    assert torch.equal(flag_read.cpu(), flag)
    plain = InputCopies(device, side_stream=False)
    assert plain.stream is None
    again, _ = plain(feats)
    assert torch.equal(again["x"].cpu(), feats["x"])
