"""On a GPU: the loss runs without host synchronisation and replays from a CUDA graph.

Skipped where CUDA is absent (CI); run on a GPU machine with
`PYTHONPATH=implementations/pytorch python3 -m pytest tests/losses/test_losses_cuda_graph.py`.
Inputs are synthetic (no structure files or biotite needed there).
"""

from __future__ import annotations

import pytest
import torch

from scalefold.losses import AlphaFoldLoss, LossConfig, TMLossConfig

from .loss_samples import collate, make_sample, synthetic_chain

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

N_RES = 40


def _inputs(seed: int):
    chain = synthetic_chain(60, seed)
    outputs, batch = collate(
        [
            make_sample(chain, 0, N_RES, seed=seed, noise=6.0),
            make_sample(chain, 10, 30, pad_to=N_RES, seed=seed + 1),
        ]
    )
    cuda = torch.device("cuda")
    return ({k: v.to(cuda) for k, v in outputs.items()}, {k: v.to(cuda) for k, v in batch.items()})


def _eager(loss, outputs, batch, use_clamped):
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in outputs.items()}
    total, breakdown = loss(leaves, batch, use_clamped)
    total.backward()
    return total.detach(), breakdown, {k: v.grad for k, v in leaves.items() if v.grad is not None}


def test_no_synchronising_operations():
    outputs, batch = _inputs(0)
    loss = AlphaFoldLoss(LossConfig(tm=TMLossConfig(enabled=True, weight=0.1))).cuda()
    use_clamped = torch.tensor([1.0, 0.0], device="cuda")
    _eager(loss, outputs, batch, use_clamped)  # first call builds cached tables
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        _eager(loss, outputs, batch, use_clamped)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_forward_and_backward_replay_from_a_cuda_graph():
    outputs, batch = _inputs(0)
    loss = AlphaFoldLoss().cuda()
    static_out = {k: v.clone().requires_grad_(True) for k, v in outputs.items()}
    static_batch = {k: v.clone() for k, v in batch.items()}
    static_clamped = torch.tensor([1.0, 0.0], device="cuda")

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            for v in static_out.values():
                v.grad = None
            total, _ = loss(static_out, static_batch, static_clamped)
            total.backward()
    # Drop the warm-up graph: live AccumulateGrad nodes from another stream would make
    # the captured backward synchronise.
    del total
    torch.cuda.current_stream().wait_stream(side)

    for v in static_out.values():
        v.grad = None
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_total, static_breakdown = loss(static_out, static_batch, static_clamped)
        static_total.backward()

    # New data through the same buffers, then compare with an eager evaluation.
    new_out, new_batch = _inputs(7)
    with torch.no_grad():
        for k, v in new_out.items():
            static_out[k].copy_(v)
    for k, v in new_batch.items():
        static_batch[k].copy_(v)
    static_clamped.copy_(torch.tensor([0.0, 1.0]))
    graph.replay()
    torch.cuda.synchronize()

    total, breakdown, grads = _eager(loss, new_out, new_batch, torch.tensor([0.0, 1.0]).cuda())
    torch.testing.assert_close(static_total, total, rtol=1e-5, atol=0)
    for name, value in breakdown.items():
        torch.testing.assert_close(static_breakdown[name], value, rtol=1e-5, atol=1e-7)
    for name, grad in grads.items():
        torch.testing.assert_close(static_out[name].grad, grad, rtol=1e-4, atol=1e-6)
