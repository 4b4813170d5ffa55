"""Run a function on `world_size` CPU processes joined by a gloo process group."""

from __future__ import annotations

import socket
from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from scalefold.train.distributed import shutdown_process_group


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, fn: Callable, world_size: int, port: int, args: tuple) -> None:
    # Two cores are shared by all workers: more threads per process only contend.
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        fn(rank, world_size, *args)
    finally:
        shutdown_process_group()


def spawn(fn: Callable, world_size: int, *args) -> None:
    """`fn(rank, world_size, *args)` on every process; a failure on any rank is raised."""
    mp.spawn(_entry, args=(fn, world_size, _free_port(), args), nprocs=world_size, join=True)
