"""Rank discovery for torchrun, Slurm (srun) and MPI launches, and process-group setup."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    launcher: str  # "torchrun" | "slurm" | "mpi" | "single"
    master_addr: str = "127.0.0.1"
    master_port: int = 29500

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def num_nodes(self) -> int:
        return max(1, self.world_size // max(1, self.local_world_size))


def _first_slurm_host(nodelist: str) -> str:
    """First host of a Slurm node list such as "gpu[012-015,020],login1" -> "gpu012"."""
    m = re.match(r"([^,\[]+)(\[([^\]]+)\])?", nodelist.strip())
    if not m:
        raise ValueError(f"cannot parse SLURM node list {nodelist!r}")
    prefix, _, ranges = m.groups()
    if not ranges:
        return prefix
    first = ranges.split(",")[0].split("-")[0]
    return prefix + first


def discover(env: Mapping[str, str] | None = None) -> DistEnv:
    """Rank and world from the launcher's environment variables.

    torchrun's variables win (they are also what `run_and_time.sh` exports), then Slurm's,
    then Open MPI's / PMI's. Nothing found means one process.
    """
    env = os.environ if env is None else env
    port = int(env.get("MASTER_PORT", "29500"))
    if "RANK" in env and "WORLD_SIZE" in env:
        return DistEnv(
            rank=int(env["RANK"]),
            world_size=int(env["WORLD_SIZE"]),
            local_rank=int(env.get("LOCAL_RANK", "0")),
            local_world_size=int(env.get("LOCAL_WORLD_SIZE", env["WORLD_SIZE"])),
            launcher="torchrun",
            master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
            master_port=port,
        )
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        world = int(env["SLURM_NTASKS"])
        nodes = int(env.get("SLURM_JOB_NUM_NODES", env.get("SLURM_NNODES", "1")))
        per_node = env.get("SLURM_NTASKS_PER_NODE", "").split("(")[0]
        local_world = int(per_node) if per_node.isdigit() else max(1, world // max(1, nodes))
        nodelist = env.get("SLURM_STEP_NODELIST", env.get("SLURM_JOB_NODELIST", ""))
        addr = env.get("MASTER_ADDR") or (_first_slurm_host(nodelist) if nodelist else "127.0.0.1")
        return DistEnv(
            rank=int(env["SLURM_PROCID"]),
            world_size=world,
            local_rank=int(env.get("SLURM_LOCALID", "0")),
            local_world_size=local_world,
            launcher="slurm",
            master_addr=addr,
            master_port=port,
        )
    for rank_key, size_key, local_key, local_size_key in (
        ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
         "OMPI_COMM_WORLD_LOCAL_SIZE"),
        ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"),
        ("PMIX_RANK", "PMIX_SIZE", "PMIX_LOCAL_RANK", "PMIX_LOCAL_SIZE"),
    ):
        if rank_key in env and size_key in env:
            world = int(env[size_key])
            return DistEnv(
                rank=int(env[rank_key]),
                world_size=world,
                local_rank=int(env.get(local_key, "0")),
                local_world_size=int(env.get(local_size_key, str(world))),
                launcher="mpi",
                master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
                master_port=port,
            )
    return DistEnv(rank=0, world_size=1, local_rank=0, local_world_size=1, launcher="single")


def mpi_master_addr() -> str:
    """Rank 0's host name broadcast over MPI (mpirun gives no MASTER_ADDR)."""
    import socket

    from mpi4py import MPI  # optional dependency: only MPI launches need it

    return MPI.COMM_WORLD.bcast(socket.gethostname() if MPI.COMM_WORLD.rank == 0 else None)


def shutdown_process_group(settle_s: float = 0.25) -> None:
    """Leave torch.distributed at the end of a run (every rank, also on error paths).

    Gloo's worker threads free each finished collective themselves, its tensors with it,
    and freeing a tensor that Python has seen takes the GIL. A process group's destructor
    (here, or later when DDP's reducer frees the subgroup it holds) joins those threads
    while holding the GIL: if a worker is still freeing the last collective, the process
    hangs (pytorch/pytorch#56297; seen in CI after an `all_gather_object` just before
    exit). Sleeping first releases the GIL so the workers can finish. No barrier: a rank
    that failed must not leave the others waiting here.
    """
    if not dist.is_initialized():
        return
    time.sleep(settle_s)
    dist.destroy_process_group()


def init_process_group(denv: DistEnv, device: torch.device) -> None:
    """NCCL on GPUs, gloo on CPUs; rendezvous through MASTER_ADDR/MASTER_PORT."""
    if not denv.is_distributed or dist.is_initialized():
        return
    addr = denv.master_addr
    if denv.launcher == "mpi" and "MASTER_ADDR" not in os.environ:
        addr = mpi_master_addr()
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(
        backend=backend,
        init_method=f"tcp://{addr}:{denv.master_port}",
        rank=denv.rank,
        world_size=denv.world_size,
    )
