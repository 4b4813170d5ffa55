"""Rank discovery for torchrun, MPI (mpirun/mpiexec) and Slurm (srun) launches, and
process-group setup."""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    launcher: str  # "torchrun" | "mpi" | "slurm" | "single"
    # "" (MPI launches without MASTER_ADDR only): not known yet; `init_process_group`
    # learns rank 0's host over MPI (`resolve_master`).
    master_addr: str = "127.0.0.1"
    master_port: int = 29500

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def num_nodes(self) -> int:
        return max(1, self.world_size // max(1, self.local_world_size))


class RendezvousError(RuntimeError):
    """The ranks cannot meet: rank 0's address is unknown to the others."""


DEFAULT_MASTER_PORT = 29500

# Set by torch.distributed.run (torchrun) in every worker's environment, next to RANK and
# WORLD_SIZE; a RANK without them was set by hand or by another tool.
_TORCHRUN_MARKERS = ("TORCHELASTIC_RUN_ID", "GROUP_RANK")

# MPI launchers, each with (rank, size, local rank, local size) and a variable that only
# that launcher sets (srun never does): Open MPI's mpirun/prterun, and the Hydra mpiexec
# of MPICH and Intel MPI, told from srun's PMI-2 plugin (whose PMI_RANK merely repeats
# SLURM_PROCID) by MPI_LOCALRANKID.
_MPI_LAUNCHERS = (
    (("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
      "OMPI_COMM_WORLD_LOCAL_SIZE"), "OMPI_COMM_WORLD_RANK"),
    (("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"), "MPI_LOCALRANKID"),
)
# PMI variables that srun's MPI plugins set as well: MPI only where Slurm's are absent
# (Cray PALS, a Hydra without local ranks, a PMIx launcher outside Slurm).
_PMI_FALLBACKS = (
    ("PMI_RANK", "PMI_SIZE", "PMI_LOCAL_RANK", "PMI_LOCAL_SIZE"),
    ("PMIX_RANK", "PMIX_SIZE", "PMIX_LOCAL_RANK", "PMIX_LOCAL_SIZE"),
)


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


def _port(env: Mapping[str, str]) -> int:
    return int(env.get("MASTER_PORT", str(DEFAULT_MASTER_PORT)))


def _from_rank_vars(env: Mapping[str, str]) -> DistEnv:
    """torchrun's RANK/WORLD_SIZE/LOCAL_RANK/LOCAL_WORLD_SIZE (env:// rendezvous)."""
    return DistEnv(
        rank=int(env["RANK"]),
        world_size=int(env["WORLD_SIZE"]),
        local_rank=int(env.get("LOCAL_RANK", "0")),
        local_world_size=int(env.get("LOCAL_WORLD_SIZE", env["WORLD_SIZE"])),
        launcher="torchrun",
        master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
        master_port=_port(env),
    )


def _from_mpi_vars(env: Mapping[str, str], keys: tuple[str, str, str, str]) -> DistEnv:
    rank_key, size_key, local_key, local_size_key = keys
    world = int(env[size_key])
    return DistEnv(
        rank=int(env[rank_key]),
        world_size=world,
        local_rank=int(env.get(local_key, "0")),
        local_world_size=int(env.get(local_size_key, str(world))),
        launcher="mpi",
        # mpirun gives no rendezvous address: MASTER_ADDR, or rank 0's host learnt over
        # MPI when the process group is created (resolve_master).
        master_addr=env.get("MASTER_ADDR", ""),
        master_port=_port(env),
    )


def _from_slurm_vars(env: Mapping[str, str]) -> DistEnv:
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
        master_port=_port(env),
    )


def discover(env: Mapping[str, str] | None = None) -> DistEnv:
    """Rank and world from the environment of the launcher that started this process.

    Launchers nest, and an outer one's variables are inherited by everything below it:
    under `mpirun` inside an sbatch job every rank sees the batch step's SLURM_PROCID, and
    a torchrun worker inside either sees theirs too. So the innermost launcher wins:

    1. torchrun: RANK/WORLD_SIZE next to TORCHELASTIC_RUN_ID or GROUP_RANK;
    2. an MPI launcher: Open MPI's OMPI_COMM_WORLD_*, or Hydra's (MPICH, Intel MPI)
       PMI_RANK/PMI_SIZE with MPI_LOCALRANKID/MPI_LOCALNRANKS;
    3. RANK/WORLD_SIZE set by other means (labelled "torchrun": the same rendezvous);
    4. Slurm's srun: SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID (with an MPI plugin srun
       also sets PMI_RANK or PMIX_RANK, equal to SLURM_PROCID);
    5. PMI_RANK/PMI_SIZE (PMI_LOCAL_RANK/PMI_LOCAL_SIZE) or PMIX_RANK/PMIX_SIZE
       without Slurm.

    Nothing found means one process. Pure: reads `env` (default: this process's
    environment) and communicates with no one; an MPI launch without MASTER_ADDR gets
    master_addr "" and `init_process_group` finds rank 0's host (`resolve_master`).
    """
    env = os.environ if env is None else env
    has_rank_vars = "RANK" in env and "WORLD_SIZE" in env
    if has_rank_vars and any(k in env for k in _TORCHRUN_MARKERS):
        return _from_rank_vars(env)
    for keys, marker in _MPI_LAUNCHERS:
        if keys[0] in env and keys[1] in env and marker in env:
            return _from_mpi_vars(env, keys)
    if has_rank_vars:
        return _from_rank_vars(env)
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        return _from_slurm_vars(env)
    for keys in _PMI_FALLBACKS:
        if keys[0] in env and keys[1] in env:
            return _from_mpi_vars(env, keys)
    return DistEnv(rank=0, world_size=1, local_rank=0, local_world_size=1, launcher="single")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def mpi_master_addr(choose_port: bool = False) -> tuple[str, int | None]:
    """(rank 0's host name, a free port on it when `choose_port`) broadcast over MPI
    (mpi4py's COMM_WORLD): mpirun tells no rank where rank 0 runs. Collective: every
    rank of the MPI world must call it."""
    from mpi4py import MPI  # optional: only MPI launches without MASTER_ADDR need it

    comm = MPI.COMM_WORLD
    mine = (socket.gethostname(), _free_port() if choose_port else None) if comm.rank == 0 \
        else None
    host, port = comm.bcast(mine, root=0)
    return host, port


def resolve_master(denv: DistEnv, env: Mapping[str, str] | None = None) -> DistEnv:
    """`denv` with a rendezvous address every rank agrees on.

    Only an MPI launch without MASTER_ADDR needs one: rank 0's host name (and, without
    MASTER_PORT, a free port of rank 0's) is broadcast with mpi4py; without mpi4py the
    launch must give MASTER_ADDR. Collective for such launches (every rank calls it, as
    `init_process_group` does); every other DistEnv is returned unchanged.
    """
    env = os.environ if env is None else env
    if denv.launcher != "mpi" or denv.master_addr or not denv.is_distributed:
        return denv
    if env.get("MASTER_ADDR"):
        return replace(denv, master_addr=env["MASTER_ADDR"])
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        raise RendezvousError(
            f"rank {denv.rank} of {denv.world_size} was started by an MPI launcher without "
            "MASTER_ADDR, and mpi4py (which would broadcast rank 0's host) is not "
            "installed: set MASTER_ADDR to the host of rank 0 (and MASTER_PORT to a free "
            "port there) in every rank's environment, e.g. mpirun -x MASTER_ADDR=<host> "
            "-x MASTER_PORT=29500 (systems/run_mpirun.sh passes both), or install mpi4py"
        ) from None
    host, port = mpi_master_addr(choose_port="MASTER_PORT" not in env)
    return replace(denv, master_addr=host, master_port=denv.master_port if port is None else port)


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
    """NCCL on GPUs, gloo on CPUs; rendezvous at `denv`'s master address and port (for
    an MPI launch without MASTER_ADDR, rank 0's host learnt over MPI: `resolve_master`).

    A torchrun launch gets its process group at any world size, one rank included, so
    that `torchrun --nproc-per-node 1` runs the multi-rank code path (its collectives and
    the flat gradient sync between CUDA graphs) on a single GPU.
    """
    if dist.is_initialized() or not (denv.is_distributed or denv.launcher == "torchrun"):
        return
    denv = resolve_master(denv)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(
        backend=backend,
        init_method=f"tcp://{denv.master_addr}:{denv.master_port}",
        rank=denv.rank,
        world_size=denv.world_size,
    )
