"""Run one measurement on W processes of this host and collect what each rank returns.

Shared by `bench dap` and `bench dp`: rank r gets GPU r (NCCL) or `threads` CPU threads
(gloo), joins a process group when W > 1, calls `measure(rank, world, device, *args)`
(a module-level function: spawn pickles it) and hands back its JSON-able result.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.multiprocessing as mp

from scalefold.train.distributed import DistEnv, init_process_group, shutdown_process_group


@dataclass
class Spawned:
    ranks: list[dict]  # each rank's result, by rank; empty on error
    wall_s: float
    error: str | None = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _rank_main(rank: int, measure: Callable[..., dict], args: tuple, world: int, cuda: bool,
               port: int, threads: int, out_dir: str) -> None:
    if cuda:
        device = torch.device("cuda", rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
        torch.set_num_threads(threads)
    if world > 1:
        init_process_group(
            DistEnv(rank=rank, world_size=world, local_rank=rank, local_world_size=world,
                    launcher="spawn", master_port=port),
            device,
        )
    try:
        result = measure(rank, world, device, *args)
    finally:
        if world > 1:
            shutdown_process_group()
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))


def spawn_ranks(measure: Callable[..., dict], args: tuple, world: int, cuda: bool,
                threads: int) -> Spawned:
    """One failing run is returned as an error, not raised: a sweep goes on."""
    # NVLink SHARP (NVLS) buffers are large and not needed for these message sizes; the
    # lent multi-GPU machines also ask for it off. Spawned workers inherit the variable.
    os.environ["NCCL_NVLS_ENABLE"] = "0"
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="scalefold_bench_") as tmp:
        try:
            mp.spawn(_rank_main, args=(measure, args, world, cuda, free_port(), threads, tmp),
                     nprocs=world, join=True)
            ranks = [json.loads(Path(tmp, f"rank{r}.json").read_text()) for r in range(world)]
        except Exception as e:  # noqa: BLE001 - one failing size must not stop the others
            return Spawned([], time.perf_counter() - t0, f"{type(e).__name__}: {e}"[-300:])
    return Spawned(ranks, time.perf_counter() - t0)
