"""Training loaders: in-order (PT) and non-blocking priority-queue (PQ).

Both consume one rank's (chain index, seed) pairs from TrainingSampler and apply the
step's recycling draw (RecyclingSchedule, identical on every rank) to each batch.

PT hands out samples strictly in sampler order, so one slow sample (a long chain with a
deep MSA) stalls the step. PQ keeps a window of samples in preparation in worker
processes and, for each batch, takes the ready samples with the lowest sampler positions:
a slow sample is overtaken and consumed in a later batch instead of stalling this one.
Every position of the rank's list is still consumed exactly once (the window only
reorders within ``window`` positions), and the loader records the order it used.

Bad input (``DataError`` while preparing a sample) never changes a sample silently and
never stops training: both loaders log a warning with the reason on logger
``scalefold.data``, record ``(position, message)`` in ``loader.skipped`` and take the next
not-yet-used position of the rank's list instead. Failures depend only on the data, so the
consumed set is the same for PT and PQ: the shortest prefix of the list holding enough
good samples, minus the bad ones.
"""

from __future__ import annotations

import heapq
import logging
import multiprocessing
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field

import torch

from .layout import DataError
from .selection import RecyclingSchedule, truncate_recycling

log = logging.getLogger("scalefold.data")


def collate(samples: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack samples into a batch (leading B)."""
    return {k: torch.stack([s[k] for s in samples]) for k in samples[0]}


@dataclass
class Batch:
    step: int
    num_recycling: int
    positions: list[int]  # positions in the rank's sample list, in batch order
    features: dict[str, torch.Tensor]


@dataclass
class LoaderConfig:
    batch_size: int  # per rank
    num_workers: int = 2
    window: int = 16  # PQ: samples in preparation or ready at once
    start_step: int = 0
    # Batches to yield; None = all full batches of the list. A smaller number leaves the
    # rest of the list as spare positions that replace skipped samples, so every rank can
    # still yield the same number of batches (DDP needs that) after a skip.
    num_batches: int | None = None
    # Positions already used before a resume (consumed out of order by PQ, or skipped):
    # passed over silently, as if absent from the list.
    exclude: frozenset[int] = frozenset()


@dataclass(frozen=True)
class SkippedSample:
    """What a worker returns instead of features when the sample's input is bad."""

    message: str


# A worker process holds its own copy of the dataset, set once by the pool initializer,
# so that tasks carry only (position, index, seed).
_worker_dataset: list = []


def _init_worker(dataset) -> None:
    torch.set_num_threads(1)
    _worker_dataset.clear()
    _worker_dataset.append(dataset)


def _prepare(dataset, position: int, index: int, seed: int):
    # DataError becomes a value here, in the worker: a pickled exception would lose its
    # .chain/.path, and any other exception must still reach the trainer unchanged.
    try:
        return position, dataset[(index, seed)]
    except DataError as exc:
        return position, SkippedSample(str(exc))


def _load(position: int, index: int, seed: int):
    return _prepare(_worker_dataset[0], position, index, seed)


class _InlineExecutor:
    """num_workers=0: prepare samples in the calling process (tests, debugging)."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def submit(self, fn, position: int, index: int, seed: int) -> Future:
        fut: Future = Future()
        try:
            fut.set_result(_prepare(self.dataset, position, index, seed))
        except Exception as exc:  # surfaces at .result(), like a worker's error
            fut.set_exception(exc)
        return fut

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


class _Pool:
    def __init__(self, dataset, num_workers: int):
        if num_workers == 0:
            self.executor = _InlineExecutor(dataset)
            return
        self.executor = ProcessPoolExecutor(
            max_workers=num_workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(dataset,),
        )

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


def _num_consumed(pairs: Sequence, config: LoaderConfig) -> int:
    full = len(pairs) // config.batch_size
    batches = full if config.num_batches is None else min(config.num_batches, full)
    return batches * config.batch_size


def _record_skip(loader, position: int, skip: SkippedSample) -> None:
    index, seed = loader.pairs[position]
    loader.skipped.append((position, skip.message))
    log.warning(
        "skipping sample at position %d (chain index %d, seed %d): %s; "
        "the next unused position of the list takes its place",
        position, index, seed, skip.message,
    )


def _warn_exhausted(loader, total: int) -> None:
    short = (total - len(loader.consumed)) // loader.config.batch_size
    log.warning(
        "the rank's sample list is exhausted after %d skipped samples: %d batch(es) short; "
        "leave spare positions (LoaderConfig.num_batches) to keep the step count",
        len(loader.skipped), short,
    )


@dataclass
class InOrderLoader:
    """PT semantics: batches in exact sampler order; prefetches ``window`` samples."""

    dataset: object
    pairs: Sequence[tuple[int, int]]
    schedule: RecyclingSchedule
    config: LoaderConfig
    consumed: list[int] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)

    def __iter__(self) -> Iterator[Batch]:
        pool = _Pool(self.dataset, self.config.num_workers)
        try:
            pending: dict[int, Future] = {}
            nxt = cursor = 0
            step = self.config.start_step
            bs = self.config.batch_size
            total = _num_consumed(self.pairs, self.config)
            ahead = max(self.config.window, bs)
            excl = self.config.exclude
            while len(self.consumed) < total:
                positions, samples = [], []
                while len(positions) < bs:
                    while cursor in excl:  # never submitted
                        cursor += 1
                    nxt = max(nxt, cursor)
                    # Only as far as a skip-free run would go, plus one position per skip.
                    limit = min(len(self.pairs), total + len(self.skipped) + len(excl))
                    while nxt < limit and nxt < cursor + ahead:
                        if nxt not in excl:
                            pending[nxt] = pool.executor.submit(_load, nxt, *self.pairs[nxt])
                        nxt += 1
                    if cursor >= nxt:
                        _warn_exhausted(self, total)
                        return
                    pos, out = pending.pop(cursor).result()
                    cursor += 1
                    if isinstance(out, SkippedSample):
                        _record_skip(self, pos, out)
                        continue
                    positions.append(pos)
                    samples.append(out)
                self.consumed.extend(positions)
                yield _batch(step, positions, samples, self.schedule)
                step += 1
        finally:
            pool.close()


@dataclass
class PriorityQueueLoader:
    """PQ semantics: each batch takes the ``batch_size`` ready samples with the lowest
    positions; it waits only while fewer than ``batch_size`` samples are ready."""

    dataset: object
    pairs: Sequence[tuple[int, int]]
    schedule: RecyclingSchedule
    config: LoaderConfig
    consumed: list[int] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)

    def __iter__(self) -> Iterator[Batch]:
        pool = _Pool(self.dataset, self.config.num_workers)
        try:
            bs = self.config.batch_size
            total = _num_consumed(self.pairs, self.config)
            window = max(self.config.window, bs)
            pending: set[Future] = set()
            ready: list[tuple[int, int]] = []  # heap of (position, slot)
            store: dict[int, dict[str, torch.Tensor]] = {}
            nxt, step = 0, self.config.start_step
            excl = self.config.exclude
            while len(self.consumed) < total:
                while len(ready) < bs:
                    limit = min(len(self.pairs), total + len(self.skipped) + len(excl))
                    while nxt < limit and len(pending) + len(ready) < window:
                        if nxt not in excl:
                            pending.add(pool.executor.submit(_load, nxt, *self.pairs[nxt]))
                        nxt += 1
                    if not pending:
                        _warn_exhausted(self, total)
                        return
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in sorted(done, key=lambda f: f.result()[0]):
                        pos, out = fut.result()
                        if isinstance(out, SkippedSample):
                            _record_skip(self, pos, out)
                            continue
                        store[pos] = out
                        heapq.heappush(ready, (pos, pos))
                positions = [heapq.heappop(ready)[0] for _ in range(bs)]
                self.consumed.extend(positions)
                yield _batch(step, positions, [store.pop(p) for p in positions], self.schedule)
                step += 1
        finally:
            pool.close()


def _batch(
    step: int, positions: list[int], samples: list[dict], schedule: RecyclingSchedule
) -> Batch:
    num_recycling = schedule(step)
    return Batch(
        step, num_recycling, positions, truncate_recycling(collate(samples), num_recycling)
    )


@dataclass
class SkewedDelayDataset:
    """Benchmark/test workload: sample i takes ``times[i]`` seconds and returns a tiny
    feature dict with a recycling dimension of 4."""

    times: Sequence[float]

    def __len__(self) -> int:
        return len(self.times)

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor]:
        index, seed = item
        time.sleep(self.times[index])
        return {"index": torch.full((1, 4), index), "seed": torch.full((1, 4), seed % 1000)}


@dataclass
class CachedValidationLoader:
    """Validation batches of one sample each, for this rank's share (``rank::world_size``)
    of the chains; the first pass computes them with their fixed seeds, later passes reuse
    the stored features (evaluation runs every 40 steps on the same chains)."""

    dataset: object
    seeds: Sequence[int]
    rank: int = 0
    world_size: int = 1
    cache: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)

    def indices(self) -> list[int]:
        return list(range(len(self.seeds)))[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
        for i in self.indices():
            if i not in self.cache:
                self.cache[i] = collate([self.dataset[(i, self.seeds[i])]])
            yield i, self.cache[i]
