"""Suite-wide pytest hooks, for `scripts/gpu_tests.sh`.

`SCALEFOLD_GPU_TESTS=1` keeps only the tests that need a GPU: those skipped without CUDA
(a `skipif` whose reason names CUDA or a GPU) and the kernel tests (the `kern` fixture,
which runs them natively on a GPU and in Triton's interpreter subprocess on a CPU).
`SCALEFOLD_TESTS_DONE=FILE` deselects the tests whose node ids FILE lists (one a line):
a device call has at most 10 minutes, less than the GPU suite takes, so the script runs
it over several calls, each passing over what an earlier one finished.

Tests marked `slow` are collected first: `scripts/test.sh` runs the suite on two
pytest-xdist workers, a file at a time in collection order, so the longest test (the
README's main job, ~15 minutes on 2 cores) starts at once beside the rest instead of
alone at the end. Each worker, and what it starts, takes its share of the cores as
threads: with every process on all of them, the main job beside the other worker ran
past 30 minutes (2 cores), twice its time alone.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest


def done_node_ids(path: str | os.PathLike) -> set[str]:
    """The node ids listed in `path` (blank lines and '#' comments ignored)."""
    lines = Path(path).read_text().splitlines()
    return {s for s in (line.strip() for line in lines) if s and not s.startswith("#")}


_GPU_REASON = re.compile(r"\b(CUDA|GPUs?)\b")


def needs_gpu(item: pytest.Item) -> bool:
    if "kern" in getattr(item, "fixturenames", ()):
        return True
    return any(_GPU_REASON.search(str(m.kwargs.get("reason", "")))
               for m in item.iter_markers("skipif"))


def pytest_configure(config: pytest.Config) -> None:
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:  # a pytest-xdist worker: its share of the cores, for it and its children
        import torch

        threads = max(1, len(os.sched_getaffinity(0)) // int(workers))
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    drop = set()
    if os.environ.get("SCALEFOLD_GPU_TESTS") == "1":
        drop |= {it.nodeid for it in items if not needs_gpu(it)}
    path = os.environ.get("SCALEFOLD_TESTS_DONE")
    if path:
        if not Path(path).is_file():
            raise pytest.UsageError(f"SCALEFOLD_TESTS_DONE={path}: no such file")
        drop |= done_node_ids(path)
    dropped = [it for it in items if it.nodeid in drop]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [it for it in items if it.nodeid not in drop]
    items.sort(key=lambda it: it.get_closest_marker("slow") is None)  # stable
