"""Training loaders: in-order (PT) and non-blocking priority-queue (PQ).

Both consume one rank's (chain index, seed) pairs from TrainingSampler and apply the
step's recycling draw (RecyclingSchedule, identical on every rank) to each batch.

PT hands out samples strictly in sampler order, so one slow sample (a long chain with a
deep MSA) stalls the step. PQ keeps a window of samples in preparation in worker
processes and, for each batch, takes the ready samples with the lowest sampler positions:
a slow sample is overtaken and consumed in a later batch instead of stalling this one.
Every position of the rank's list is still consumed exactly once (the window only
reorders within ``window`` positions), and the loader records the order it used.
"""

from __future__ import annotations

import heapq
import multiprocessing
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field

import torch

from .selection import RecyclingSchedule, truncate_recycling


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


# A worker process holds its own copy of the dataset, set once by the pool initializer,
# so that tasks carry only (position, index, seed).
_worker_dataset: list = []


def _init_worker(dataset) -> None:
    torch.set_num_threads(1)
    _worker_dataset.clear()
    _worker_dataset.append(dataset)


def _load(position: int, index: int, seed: int) -> tuple[int, dict[str, torch.Tensor]]:
    return position, _worker_dataset[0][(index, seed)]


class _InlineExecutor:
    """num_workers=0: prepare samples in the calling process (tests, debugging)."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def submit(self, fn, position: int, index: int, seed: int) -> Future:
        fut: Future = Future()
        try:
            fut.set_result((position, self.dataset[(index, seed)]))
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


@dataclass
class InOrderLoader:
    """PT semantics: batches in exact sampler order; prefetches ``window`` samples."""

    dataset: object
    pairs: Sequence[tuple[int, int]]
    schedule: RecyclingSchedule
    config: LoaderConfig
    consumed: list[int] = field(default_factory=list)

    def __iter__(self) -> Iterator[Batch]:
        pool = _Pool(self.dataset, self.config.num_workers)
        try:
            pending: dict[int, Future] = {}
            nxt = 0
            step = self.config.start_step
            bs = self.config.batch_size
            for start in range(0, len(self.pairs) - bs + 1, bs):
                while nxt < len(self.pairs) and nxt < start + max(self.config.window, bs):
                    pending[nxt] = pool.executor.submit(_load, nxt, *self.pairs[nxt])
                    nxt += 1
                positions = list(range(start, start + bs))
                samples = [pending.pop(p).result()[1] for p in positions]
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

    def __iter__(self) -> Iterator[Batch]:
        pool = _Pool(self.dataset, self.config.num_workers)
        try:
            bs = self.config.batch_size
            total = (len(self.pairs) // bs) * bs
            window = max(self.config.window, bs)
            pending: set[Future] = set()
            ready: list[tuple[int, int]] = []  # heap of (position, slot)
            store: dict[int, dict[str, torch.Tensor]] = {}
            nxt, step = 0, self.config.start_step
            while len(self.consumed) < total:
                while nxt < total and len(pending) + len(ready) < window:
                    pending.add(pool.executor.submit(_load, nxt, *self.pairs[nxt]))
                    nxt += 1
                while len(ready) < bs:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        pos, sample = fut.result()
                        store[pos] = sample
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
