from __future__ import annotations

import time

from scalefold.data.loaders import (
    CachedValidationLoader,
    InOrderLoader,
    LoaderConfig,
    PriorityQueueLoader,
    SkewedDelayDataset,
)
from scalefold.data.selection import RecyclingSchedule

TIMES = [1.5] + [0.01] * 11  # sample 0 is a slow chain
PAIRS = [(i, 1000 + i) for i in range(12)]


def _run(loader_cls):
    loader = loader_cls(
        SkewedDelayDataset(TIMES),
        PAIRS,
        RecyclingSchedule(seed=5),
        LoaderConfig(batch_size=2, num_workers=2, window=8),
    )
    batches = []
    for batch in loader:
        batches.append((time.perf_counter(), batch))
    return loader, batches


def test_in_order_and_priority_queue_loaders():
    pt, pt_batches = _run(InOrderLoader)
    assert pt.consumed == list(range(12))
    assert pt_batches[0][1].positions == [0, 1]
    b = pt_batches[0][1]
    schedule = RecyclingSchedule(seed=5)
    assert b.num_recycling == schedule(0) and b.features["index"].shape == (2, 1, schedule(0) + 1)
    assert b.features["index"][:, 0, 0].tolist() == [0, 1]

    pq, pq_batches = _run(PriorityQueueLoader)
    assert sorted(pq.consumed) == list(range(12))  # every sample exactly once
    assert 0 not in pq_batches[0][1].positions  # the slow sample was overtaken
    assert [b.step for _, b in pq_batches] == list(range(6))
    assert [b.num_recycling for _, b in pq_batches] == schedule.draws(range(6))
    for _, batch in pq_batches:  # features travel with their positions
        assert batch.features["index"][:, 0, 0].tolist() == [PAIRS[p][0] for p in batch.positions]


class _CountingDataset(SkewedDelayDataset):
    calls: int = 0

    def __getitem__(self, item):
        self.calls += 1
        return super().__getitem__(item)


def test_validation_loader_caches_features():
    ds = _CountingDataset([0.0] * 5)
    loader = CachedValidationLoader(ds, seeds=[7, 8, 9, 10, 11], rank=1, world_size=2)
    first = [(i, b["seed"][0, 0, 0].item()) for i, b in loader]
    assert first == [(1, 8), (3, 10)] and ds.calls == 2
    assert [(i, b["seed"][0, 0, 0].item()) for i, b in loader] == first and ds.calls == 2
