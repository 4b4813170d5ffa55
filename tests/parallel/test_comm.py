"""DAP collectives: forward values and gradients against one-process autograd.

Every rank builds the same global data (same seed). The one-process reference computes
every rank's output with plain tensor ops and differentiates the total loss, which is
Σ_r <y_r, g_r> for per-rank outputs and <y, g> (one copy) for a replicated output; the
distributed op must give rank r's output and rank r's block of that gradient (the whole
gradient for a replicated input).
"""

from __future__ import annotations

import pytest
import torch

from scalefold.parallel import comm

from ._dist import spawn


def _close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12, msg=what)


def _check_scatter(rank: int, p: int, dim: int) -> None:
    x = torch.randn(2 * p, 4, 4 * p, p, dtype=torch.float64)  # replicated input
    cot = [torch.randn(c.shape, dtype=torch.float64) for c in x.chunk(p, dim)]
    ref_x = x.clone().requires_grad_(True)
    ref = ref_x.chunk(p, dim)
    sum((y * c).sum() for y, c in zip(ref, cot)).backward()

    x = x.clone().requires_grad_(True)
    y = comm.scatter(x, dim, None)
    (y * cot[rank]).sum().backward()
    _close(y, ref[rank].detach(), f"scatter dim {dim}")
    _close(x.grad, ref_x.grad, f"scatter grad dim {dim}")


def _check_gather(rank: int, p: int, dim: int) -> None:
    xs = [torch.randn(3, 2, 5, dtype=torch.float64) for _ in range(p)]
    ref_xs = [x.clone().requires_grad_(True) for x in xs]
    ref = torch.cat(ref_xs, dim)
    cot = torch.randn(ref.shape, dtype=torch.float64)  # one replicated loss
    (ref * cot).sum().backward()

    x = xs[rank].clone().requires_grad_(True)
    y = comm.gather(x, dim, None)
    (y * cot).sum().backward()
    _close(y, ref.detach(), f"gather dim {dim}")
    _close(x.grad, ref_xs[rank].grad, f"gather grad dim {dim}")


def _check_all_gather(rank: int, p: int, dim: int) -> None:
    xs = [torch.randn(3, 2, 5, dtype=torch.float64) for _ in range(p)]
    ref_xs = [x.clone().requires_grad_(True) for x in xs]
    whole = torch.cat(ref_xs, dim)
    cot = [torch.randn(whole.shape, dtype=torch.float64) for _ in range(p)]
    sum((whole * c).sum() for c in cot).backward()

    x = xs[rank].clone().requires_grad_(True)
    y = comm.all_gather(x, dim, None)
    (y * cot[rank]).sum().backward()
    _close(y, whole.detach(), f"all_gather dim {dim}")
    _close(x.grad, ref_xs[rank].grad, f"all_gather grad dim {dim}")


def _check_reduce_scatter(rank: int, p: int, dim: int) -> None:
    xs = [torch.randn(3, 2 * p, 5 * p, dtype=torch.float64) for _ in range(p)]
    ref_xs = [x.clone().requires_grad_(True) for x in xs]
    ref = sum(ref_xs).chunk(p, dim)
    cot = [torch.randn(r.shape, dtype=torch.float64) for r in ref]
    sum((y * c).sum() for y, c in zip(ref, cot)).backward()

    x = xs[rank].clone().requires_grad_(True)
    y = comm.reduce_scatter(x, dim, None)
    (y * cot[rank]).sum().backward()
    _close(y, ref[rank].detach(), f"reduce_scatter dim {dim}")
    _close(x.grad, ref_xs[rank].grad, f"reduce_scatter grad dim {dim}")


def _check_all_to_all(rank: int, p: int, shape: tuple[int, ...], s: int, g: int) -> None:
    whole = torch.randn(shape, dtype=torch.float64)
    ref_w = whole.clone().requires_grad_(True)
    ins = ref_w.chunk(p, g)  # rank r holds block r along g ...
    outs = whole.chunk(p, s)  # ... and must end with block r along s
    cot_whole = torch.randn(shape, dtype=torch.float64)
    cot = cot_whole.chunk(p, s)
    # The re-sharding is a permutation of the whole tensor: the reference loss is
    # <whole, cot_whole>, whose gradient is cot_whole, read in the input layout.
    (ref_w * cot_whole).sum().backward()

    x = ins[rank].detach().clone().requires_grad_(True)
    y = comm.all_to_all(x, s, g, None)
    (y * cot[rank]).sum().backward()
    _close(y, outs[rank], f"all_to_all {shape} {s} {g}")
    _close(x.grad, ref_w.grad.chunk(p, g)[rank], f"all_to_all grad {shape} {s} {g}")


def _check_row_col(rank: int, p: int) -> None:
    for shape in [(1, 2 * p, 3 * p, 4), (1, 2, 2 * p, 2 * p, 3)]:
        whole = torch.randn(shape, dtype=torch.float64)
        rows = whole.chunk(p, -3)[rank].requires_grad_(True)
        cols = comm.row_to_col(rows, None)
        _close(cols, whole.chunk(p, -2)[rank], f"row_to_col {shape}")
        back = comm.col_to_row(cols, None)
        _close(back, rows.detach(), f"col_to_row {shape}")
        cot = torch.randn(back.shape, dtype=torch.float64)
        (back * cot).sum().backward()
        _close(rows.grad, cot, f"row_to_col ∘ col_to_row grad {shape}")


def _worker(rank: int, p: int) -> None:
    torch.manual_seed(1234)  # the same global data on every rank
    for dim in (0, 1, -2, -1):
        _check_scatter(rank, p, dim)
    for dim in (0, -2, -1):
        _check_gather(rank, p, dim)
        _check_all_gather(rank, p, dim)
    for dim in (1, -1):
        _check_reduce_scatter(rank, p, dim)
    for shape, s, g in [
        ((2 * p, 3 * p, 2), 1, 0),
        ((2 * p, 3 * p, 2), 0, 1),
        ((1, 2 * p, 2, 3 * p), -1, 1),
        ((1, 2, 2 * p, 2 * p, 3), -3, -2),
    ]:
        _check_all_to_all(rank, p, shape, s, g)
    _check_row_col(rank, p)
    # Indivisible shapes fail with the dimension named, on every rank alike.
    with pytest.raises(ValueError, match="not divisible by the DAP size"):
        comm.scatter(torch.zeros(3, 2 * p + 1), 1, None)


@pytest.mark.parametrize("world_size", [2, 4])
def test_collectives_match_one_process_autograd(world_size: int) -> None:
    spawn(_worker, world_size)
