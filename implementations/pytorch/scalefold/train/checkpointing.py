"""Resumable training checkpoints: written atomically, the last N kept, off the critical
path (`AsyncCheckpointWriter`), with write failures that name the file and the cause."""

from __future__ import annotations

import errno
import io
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Any

import torch


class CheckpointWriteError(OSError):
    """A checkpoint could not be written: the message names the file and the cause."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{os.strerror(exc.errno)} (errno {errno.errorcode.get(exc.errno, exc.errno)})"
    return f"{type(exc).__name__}: {exc}"

_NAME = re.compile(r"^step_(\d{8})\.pt$")


def atomic_torch_save(obj: Any, path: Path) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over `path`:
    a crash leaves either the old file or the new one, never a torn one.

    The object is serialised in memory first, so a full or read-only disk surfaces as the
    operating system's error on our own write (`CheckpointWriteError` naming the file),
    not as a serialiser's internal assertion."""
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(buffer.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise CheckpointWriteError(f"could not write checkpoint {path}: {_describe(exc)}") from exc
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


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


def _to_host(obj: Any, copies: list[torch.Tensor]) -> Any:
    """`obj` with every tensor replaced by a host copy (pinned when it lives on a GPU),
    started without waiting; `copies` collects the pinned ones."""
    if isinstance(obj, torch.Tensor):
        if obj.is_cuda:
            host = torch.empty(obj.shape, dtype=obj.dtype, pin_memory=True)
            host.copy_(obj.detach(), non_blocking=True)
            copies.append(host)
            return host
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _to_host(v, copies) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_host(v, copies) for v in obj)
    return obj


class AsyncCheckpointWriter:
    """Checkpoints written by a background thread.

    `save` copies the state to host memory in stream order (the next step, queued after
    the copies, cannot change what is being saved) and returns; a thread waits for the
    copies and writes the file atomically. One write at a time: a save waits for the
    previous write, and a failed write is raised by the next `save` or by `close`.
    """

    def __init__(self, directory: Path, keep_last: int) -> None:
        self.directory = Path(directory)
        self.keep_last = keep_last
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.written: list[Path] = []

    def _wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def save(self, iteration: int, state: dict) -> None:
        self._wait()
        copies: list[torch.Tensor] = []
        host_state = _to_host(state, copies)
        done = None
        if copies:
            done = torch.cuda.Event()
            done.record()

        def write() -> None:
            try:
                if done is not None:
                    done.synchronize()
                self.written.append(save_training_checkpoint(
                    self.directory, iteration, host_state, self.keep_last))
            except BaseException as exc:  # noqa: BLE001 - handed to the training thread
                self._error = exc

        self._thread = threading.Thread(target=write, name=f"checkpoint-{iteration}",
                                        daemon=False)
        self._thread.start()

    def close(self) -> None:
        """Wait for the last write; raise its error."""
        self._wait()
