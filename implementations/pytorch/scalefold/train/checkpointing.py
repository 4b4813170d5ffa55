"""Resumable training checkpoints: written atomically, the last N kept."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

_NAME = re.compile(r"^step_(\d{8})\.pt$")


def atomic_torch_save(obj: Any, path: Path) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over `path`:
    a crash leaves either the old file or the new one, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def checkpoint_path(directory: Path, iteration: int) -> Path:
    return Path(directory) / f"step_{iteration:08d}.pt"


def list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for p in directory.iterdir():
        m = _NAME.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def save_training_checkpoint(directory: Path, iteration: int, state: dict, keep_last: int) -> Path:
    path = checkpoint_path(directory, iteration)
    atomic_torch_save({"iteration": iteration, **state}, path)
    if keep_last > 0:
        for _, old in list_checkpoints(directory)[:-keep_last]:
            old.unlink(missing_ok=True)
    return path


def load_latest_checkpoint(directory: Path, map_location: Any = "cpu") -> dict | None:
    """The newest checkpoint that loads; a corrupt newest one is reported and skipped."""
    for iteration, path in reversed(list_checkpoints(directory)):
        try:
            state = torch.load(path, map_location=map_location, weights_only=False)
        except Exception as exc:  # a torn or corrupt file: say so, try the previous one
            print(f"warning: skipping unreadable checkpoint {path}: {exc}")
            continue
        if state.get("iteration") != iteration:
            print(f"warning: skipping checkpoint {path}: iteration field does not match name")
            continue
        return state
    return None
