"""Stopping a run cleanly on a signal (Slurm's preemption and time limit send SIGTERM,
`scancel --signal=USR1` SIGUSR1): every rank stops after the same step.

`StopSignal` turns the signals into a flag. `StopVote` makes the ranks agree: after each
step is launched, the flag is all-reduced (MAX) behind it on the device and copied to
pinned host memory; the result is read one step later, once that step has finished, so
the vote never makes the host wait for work it would not wait for anyway.
"""

from __future__ import annotations

import signal
import sys
import threading

import torch
import torch.distributed as dist

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class StopSignal:
    """A flag set by SIGTERM or SIGUSR1 (installed from the main thread only)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    def _handle(self, signum, frame) -> None:  # noqa: ARG002 - the signal API
        if not self.event.is_set():
            self.signum = signum
            print(f"[scalefold] {signal.Signals(signum).name}: stopping after the current step",
                  file=sys.stderr, flush=True)
        self.event.set()

    def install(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        for sig, old in self._previous.items():
            signal.signal(sig, old)
        self._previous.clear()


class StopVote:
    """Agreement of the training ranks on a local stop flag, one step behind."""

    def __init__(self, group=None, world_size: int = 1, device: torch.device | None = None
                 ) -> None:
        self.group = group
        self.world_size = world_size
        self.device = device or torch.device("cpu")
        self._posted: tuple[torch.Tensor, torch.cuda.Event | None] | None = None
        self._local = False

    def post(self, local: bool) -> None:
        """Start the vote on `local` (after a step is launched)."""
        if self.world_size == 1:
            self._local = local
            return
        flag = torch.tensor([int(local)], dtype=torch.int32, device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self.group)
        if flag.is_cuda:
            host = torch.empty(1, dtype=torch.int32, pin_memory=True)
            host.copy_(flag, non_blocking=True)
            done = torch.cuda.Event()
            done.record()
            self._posted = (host, done)
        else:
            self._posted = (flag, None)

    def result(self) -> bool:
        """The outcome of the last vote posted (False before any)."""
        if self.world_size == 1:
            return self._local
        if self._posted is None:
            return False
        host, done = self._posted
        if done is not None:
            done.synchronize()
        return bool(host.item())
