"""A run's own directory: one run at a time in it, and one seed for all its ranks."""

from __future__ import annotations

import os
import secrets
import socket
import time
from pathlib import Path

import torch.distributed as dist

from scalefold.train.distributed import DistEnv

LOCK_NAME = ".scalefold.lock"


class RunDirectoryError(RuntimeError):
    """The run's directory cannot be used as asked (checkpoints of another run, no
    checkpoint to resume from, a lock held by another run)."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """An exclusive lock on a run directory, held by the global rank 0 for the run.

    The lock file names its owner (host, pid, start time). Two runs into one directory
    would mix their checkpoints and logs, so the second is refused; a lock left by a
    process of this host that no longer exists is taken over, with a note.
    """

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / LOCK_NAME
        self._held = False

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = f"host={socket.gethostname()} pid={os.getpid()} since={time.strftime('%FT%T')}"
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self.path.read_text(errors="replace").strip()
                fields = dict(f.split("=", 1) for f in owner.split() if "=" in f)
                stale = (fields.get("host") == socket.gethostname()
                         and fields.get("pid", "").isdigit() and not _alive(int(fields["pid"])))
                if not stale:
                    raise RunDirectoryError(
                        f"{self.path.parent} is in use by another run ({owner}); runs must "
                        f"not share a directory. If that run has ended, delete {self.path}."
                    ) from None
                print(f"[scalefold] taking over the stale lock of an ended run ({owner})",
                      flush=True)
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(me + "\n")
            self._held = True
            return self
        raise RunDirectoryError(f"could not lock {self.path}")

    def release(self) -> None:
        if self._held:
            self.path.unlink(missing_ok=True)
            self._held = False


def agree_on_seed(seed: int | None, denv: DistEnv) -> int:
    """`seed`, or one drawn by rank 0 and broadcast, so that every rank uses the same."""
    if seed is not None:
        return seed
    drawn = [secrets.randbelow(2**31 - 1) if denv.rank == 0 else 0]
    if denv.is_distributed:
        dist.broadcast_object_list(drawn, src=0)
    return int(drawn[0])
