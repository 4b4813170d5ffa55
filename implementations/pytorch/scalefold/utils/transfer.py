"""Host-to-device copies of feature dicts that never make the host wait for the GPU.

A `non_blocking` copy from ordinary (pageable) host memory is not asynchronous: CUDA
first waits for the stream to drain, so in the trainer, where the next batch is copied
while the previous step runs, the host would wait for that step before it could queue the
next. Copied through page-locked memory the copy is queued and the host goes on; the
caching host allocator keeps the pinned buffers until their copies are done.

Queued on the compute stream, though, the copies still run between two steps, and the GPU
idles for them. `InputCopies` with a side stream runs them while the previous step
computes instead (`SpeedConfig.input_copy_stream`).
"""

from __future__ import annotations

import torch


def tensor_to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`t` on `device`; to a CUDA device through pinned memory, without waiting."""
    if device.type != "cuda" or t.is_cuda:
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def to_device(feats: dict[str, torch.Tensor], device: torch.device,
              ) -> dict[str, torch.Tensor]:
    """`feats` on `device` (`tensor_to_device` for each)."""
    return {k: tensor_to_device(v, device) for k, v in feats.items()}


class InputCopies:
    """One step's inputs to `device`: `copies(feats, *tensors)` -> (feats, [tensors]).

    With `side_stream` on a CUDA device the copies are queued on a stream of their own,
    so they overlap whatever the compute stream (the current stream at the call) is still
    running; the compute stream then waits for them before anything queued after the call,
    and every copy is marked as used by the compute stream, so that the caching allocator
    does not give its memory to a later copy before the step that reads it has run.
    Otherwise the copies are queued on the current stream (`tensor_to_device`)."""

    def __init__(self, device: torch.device, side_stream: bool) -> None:
        self.device = device
        self.stream = (torch.cuda.Stream(device) if side_stream and device.type == "cuda"
                       else None)

    def __call__(self, feats: dict[str, torch.Tensor], *tensors: torch.Tensor,
                 ) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
        if self.stream is None:
            return (to_device(feats, self.device),
                    [tensor_to_device(t, self.device) for t in tensors])
        compute = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self.stream):
            out = to_device(feats, self.device)
            rest = [tensor_to_device(t, self.device) for t in tensors]
        compute.wait_stream(self.stream)
        for t in (*out.values(), *rest):
            t.record_stream(compute)
        return out, rest
