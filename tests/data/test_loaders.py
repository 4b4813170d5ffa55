from __future__ import annotations

import logging
import time

import pytest

from scalefold.data.layout import DataError
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


class _BadInput(SkewedDelayDataset):
    """Raises DataError for chosen chain indices, as a corrupt alignment entry would."""

    bad: frozenset = frozenset()

    def __getitem__(self, item):
        if item[0] in self.bad:
            raise DataError("empty MSA uniref90_hits.a3m", chain=f"chain{item[0]}",
                            path="/data/3.db")
        return super().__getitem__(item)


def _bad_input_loader(loader_cls, bad, n=12, num_batches=None, num_workers=0, times=None):
    ds = _BadInput(times or [0.0] * n)
    ds.bad = frozenset(bad)
    return loader_cls(
        ds, [(i, 100 + i) for i in range(n)], RecyclingSchedule(seed=5),
        LoaderConfig(batch_size=2, num_workers=num_workers, window=4, num_batches=num_batches),
    )


@pytest.mark.parametrize("loader_cls", [InOrderLoader, PriorityQueueLoader])
def test_bad_input_is_skipped_logged_and_replaced(loader_cls, caplog):
    loader = _bad_input_loader(loader_cls, bad={1, 6}, num_batches=4)
    with caplog.at_level(logging.WARNING, logger="scalefold.data"):
        batches = list(loader)
    assert len(batches) == 4 and all(b.features["index"].shape[0] == 2 for b in batches)
    # positions 1 and 6 are replaced by 8 and 9, the next unused ones; 10, 11 stay spare
    assert sorted(loader.consumed) == [0, 2, 3, 4, 5, 7, 8, 9]
    assert [p for p, _ in loader.skipped] == [1, 6]
    assert "chain1" in loader.skipped[0][1] and "/data/3.db" in loader.skipped[0][1]
    warnings = [r for r in caplog.records if r.name == "scalefold.data"]
    assert len(warnings) == 2 and "empty MSA" in warnings[0].getMessage()
    for batch in batches:  # features still travel with their positions
        assert batch.features["index"][:, 0, 0].tolist() == batch.positions
    if loader_cls is InOrderLoader:
        assert loader.consumed == [0, 2, 3, 4, 5, 7, 8, 9]


def test_bad_input_in_worker_processes():
    # A slow good sample ahead of the bad one: PQ must still skip and replace it.
    loader = _bad_input_loader(PriorityQueueLoader, bad={2}, n=8, num_batches=3,
                               num_workers=2, times=[0.3] + [0.0] * 7)
    batches = list(loader)
    assert len(batches) == 3 and sorted(loader.consumed) == [0, 1, 3, 4, 5, 6]
    assert loader.skipped[0][0] == 2 and "chain2" in loader.skipped[0][1]


def test_exhausted_list_stops_early_with_a_warning(caplog):
    loader = _bad_input_loader(InOrderLoader, bad={0, 5}, n=6)
    with caplog.at_level(logging.WARNING, logger="scalefold.data"):
        batches = list(loader)
    assert [b.positions for b in batches] == [[1, 2], [3, 4]]
    assert "exhausted" in caplog.records[-1].getMessage()


@pytest.mark.parametrize("loader_cls", [InOrderLoader, PriorityQueueLoader])
def test_other_errors_still_propagate(loader_cls):
    class Broken(SkewedDelayDataset):
        def __getitem__(self, item):
            raise KeyError("a bug, not bad input")

    loader = loader_cls(Broken([0.0] * 4), [(i, i) for i in range(4)], RecyclingSchedule(seed=5),
                        LoaderConfig(batch_size=2, num_workers=0))
    with pytest.raises(KeyError):
        list(loader)


@pytest.mark.parametrize("loader_cls", [InOrderLoader, PriorityQueueLoader])
def test_excluded_positions_are_passed_over(loader_cls):
    """A resumed loader passes over positions used before the checkpoint: no skip logged,
    the step count kept, the same samples as a list without them."""
    pairs = [(i, 100 + i) for i in range(12)]
    cfg = LoaderConfig(batch_size=2, num_workers=0, window=4, num_batches=4,
                       exclude=frozenset({0, 3, 4}))
    loader = loader_cls(SkewedDelayDataset([0.0] * 12), pairs, RecyclingSchedule(seed=5), cfg)
    batches = list(loader)
    assert len(batches) == 4 and not loader.skipped
    assert sorted(loader.consumed) == [1, 2, 5, 6, 7, 8, 9, 10]
    for batch in batches:
        assert batch.features["index"][:, 0, 0].tolist() == batch.positions
