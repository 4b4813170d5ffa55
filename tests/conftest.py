"""Suite-wide pytest hooks.

`SCALEFOLD_TESTS_DONE=FILE` deselects the tests whose node ids FILE lists (one a line):
a device call has at most 10 minutes, less than the GPU suite takes, so
`scripts/gpu_tests.sh` runs it over several calls, each skipping what an earlier one
finished.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def done_node_ids(path: str | os.PathLike) -> set[str]:
    """The node ids listed in `path` (blank lines and '#' comments ignored)."""
    lines = Path(path).read_text().splitlines()
    return {s for s in (line.strip() for line in lines) if s and not s.startswith("#")}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    path = os.environ.get("SCALEFOLD_TESTS_DONE")
    if not path:
        return
    if not Path(path).is_file():
        raise pytest.UsageError(f"SCALEFOLD_TESTS_DONE={path}: no such file")
    done = done_node_ids(path)
    keep = [it for it in items if it.nodeid not in done]
    dropped = [it for it in items if it.nodeid in done]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
