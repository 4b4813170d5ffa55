"""The flat gradient buffer's two syncs: the bucketed one launches its all-reduces from
inside backward, in bucket order, and gives the flat one's bits."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from scalefold.train.grad_sync import BucketedGradSync, FlatGradSync

from .test_step import _build, batches  # noqa: F401 - the fixture

SMALL = 16 * 1024  # bytes a bucket: the tiny model's buffer cut into many buckets


def _train(sync, data, steps: int | None = None):
    model, step = _build(fused=True)
    step.grad_sync = sync
    uc = torch.ones(1)
    for i, b in enumerate(data[:steps]):
        torch.manual_seed(100 + i)
        step(b, uc)
    return model, step


@pytest.fixture
def process_group_of_one(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0,
                            world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.fixture
def all_reduces(monkeypatch):
    """Every all-reduce: (offset in the flat buffer, elements, inside backward, whether
    some gradient of this backward was still to come)."""
    calls: list[tuple[int, int, bool, bool]] = []
    real = dist.all_reduce
    state: dict = {}

    def spy(tensor, *args, **kwargs):
        sync = state.get("sync")
        if sync is None or sync.flat is None or (
                tensor.untyped_storage().data_ptr() != sync.flat.untyped_storage().data_ptr()):
            return real(tensor, *args, **kwargs)  # another sync's, or the layout's
        offset = (tensor.data_ptr() - sync.flat.data_ptr()) // tensor.element_size()
        inside = torch._C._current_graph_task_id() != -1
        waiting = any(sync._params[i].grad is None for b in sync.buckets
                      for i in b.members)
        calls.append((offset, tensor.numel(), inside, waiting))
        return real(tensor, *args, **kwargs)

    monkeypatch.setattr(dist, "all_reduce", spy)
    return calls, state


def test_bucketed_gives_the_flat_sync_bits(batches):  # noqa: F811
    flat_model, _ = _train(FlatGradSync(), batches)
    model, step = _train(BucketedGradSync(bucket_bytes=SMALL), batches)
    assert len(step.grad_sync.buckets) > 3
    for p, q in zip(model.parameters(), flat_model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_buckets_partition_the_buffer_in_gradient_order(batches):  # noqa: F811
    _, step = _train(BucketedGradSync(bucket_bytes=SMALL), batches, steps=1)
    sync = step.grad_sync
    members = [i for b in sync.buckets for i in b.members]
    assert members == sync._order  # the layout is the order gradients arrived in
    assert sorted(members) == [i for i, p in enumerate(sync._params) if p.grad is not None]
    assert sum(b.flat.numel() for b in sync.buckets) == sync.flat.numel()
    for b in sync.buckets[:-1]:  # each closes once it reaches the size (a big one alone)
        size = b.flat.numel() * b.flat.element_size()
        last = sync._params[b.members[-1]].numel() * b.flat.element_size()
        assert size >= SMALL and size - last < SMALL
    # Each parameter's gradient is its view of its bucket's slice.
    for b in sync.buckets:
        for i, view in zip(b.members, b.views, strict=True):
            assert sync._params[i].grad is view
            assert b.flat.data_ptr() <= view.data_ptr() < b.flat.data_ptr() + b.flat.nbytes


def test_all_reduces_run_inside_backward_in_bucket_order(batches, process_group_of_one,  # noqa: F811
                                                         all_reduces):
    calls, state = all_reduces
    flat_model, _ = _train(FlatGradSync(), batches)
    sync = BucketedGradSync(bucket_bytes=SMALL)
    state["sync"] = sync
    model, _ = _train(sync, batches)
    n = len(sync.buckets)
    # The first step learns the layout and reduces the whole buffer after backward.
    assert calls[0][:3] == (0, sync.flat.numel(), False)
    later = calls[1:]
    assert len(later) == n * (len(batches) - 1)
    for k in range(len(batches) - 1):
        step_calls = later[k * n:(k + 1) * n]
        assert [c[:2] for c in step_calls] == [
            ((b.flat.data_ptr() - sync.flat.data_ptr()) // 4, b.flat.numel())
            for b in sync.buckets]
        assert all(inside for _, _, inside, _ in step_calls)
        # Overlap: the first bucket went out while backward still owed gradients.
        assert step_calls[0][3] and not step_calls[-1][3]
    for p, q in zip(model.parameters(), flat_model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_a_bucket_ready_early_waits_for_the_ones_before_it(batches, process_group_of_one,  # noqa: F811
                                                           all_reduces, monkeypatch):
    """Launch order is the bucket index on every rank, whatever order backward produces
    them in: here the layout is backward's order reversed, so bucket 0 is ready last and
    every launch waits for it."""
    calls, state = all_reduces
    monkeypatch.setattr(BucketedGradSync, "_agreed_order", lambda self, order: order[::-1])
    sync = BucketedGradSync(bucket_bytes=SMALL)
    state["sync"] = sync
    model, _ = _train(sync, batches, steps=2)
    second = calls[1:]
    offsets = [c[0] for c in second]
    assert len(second) == len(sync.buckets) > 3 and offsets == sorted(offsets)
    assert not any(waiting for *_, waiting in second)  # all sent after the last gradient
    flat2, _ = _train(FlatGradSync(), batches, steps=2)
    for p, q in zip(model.parameters(), flat2.parameters(), strict=True):
        assert torch.equal(p, q)


def test_a_parameter_left_out_after_the_first_step_is_an_error(batches):  # noqa: F811
    model, step = _train(BucketedGradSync(bucket_bytes=SMALL), batches, steps=1)
    used = [p for p in model.parameters() if p.grad is not None]
    used[len(used) // 2].requires_grad_(False)
    with pytest.raises(RuntimeError, match="changed after the first step"):
        step(batches[1], torch.ones(1))
