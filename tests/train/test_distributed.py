"""Data parallelism over gloo: two ranks of batch 1 train exactly like one rank of batch 2."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from scalefold.model.dropout import SharedDropout
from scalefold.train.config import SpeedConfig
from scalefold.train.distributed import DistEnv, init_process_group, shutdown_process_group
from scalefold.train.trainer import Trainer

from .test_trainer import _config


def _no_dropout(model: nn.Module) -> None:
    # Dropout masks are drawn per process, so a batch split over ranks would see other
    # masks than the same batch in one process; equality needs them off.
    for m in model.modules():
        if isinstance(m, (SharedDropout, nn.Dropout)):
            m.p = 0.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, mini, out: str, speed) -> None:
    torch.set_num_threads(1)
    denv = DistEnv(rank=rank, world_size=world, local_rank=rank, local_world_size=world,
                   launcher="torchrun", master_addr="127.0.0.1", master_port=port)
    init_process_group(denv, torch.device("cpu"))
    try:
        cfg = _config(mini, Path(out) / "ddp", num_train_iters=3, val_every_iters=3,
                      resume=None, speed=speed)
        t = Trainer(cfg, denv, torch.device("cpu"))
        _no_dropout(t.model)
        t.build_data()
        result = t.run()
        if rank == 0:
            torch.save({"state": t.model.state_dict(), "evals": result.evaluations,
                        "process_group": torch.distributed.is_initialized()},
                       Path(out) / f"rank{rank}.pt")
        else:
            torch.save({"state": t.model.state_dict()}, Path(out) / f"rank{rank}.pt")
    finally:
        shutdown_process_group()


@pytest.mark.parametrize("speed", [
    SpeedConfig(),  # DDP hooks, clip then Adam
    SpeedConfig(grad_sync="flat", fused_optimizer=True),  # the CUDA-graph layout, eager
    SpeedConfig(grad_sync="bucketed", fused_optimizer=True),  # buckets from backward
], ids=["ddp", "flat+fused", "bucketed+fused"])
def test_two_ranks_equal_one_rank_with_twice_the_batch(mini_dataset, tmp_path, speed):
    port = _free_port()
    os.environ.pop("RANK", None)
    mp.spawn(_rank_main, args=(2, port, mini_dataset, str(tmp_path), speed), nprocs=2,
             join=True)
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    # DDP keeps the replicas identical.
    for name, value in r0["state"].items():
        assert torch.equal(value, r1["state"][name]), name

    from scalefold.train.distributed import discover

    cfg = _config(mini_dataset, tmp_path / "single", num_train_iters=3, val_every_iters=3,
                  resume=None, local_batch_size=2)
    single = Trainer(cfg, discover({}), torch.device("cpu"))
    _no_dropout(single.model)
    single.build_data()
    result = single.run()
    moved = 0
    init = Trainer(cfg, discover({}), torch.device("cpu")).model.state_dict()
    for name, value in single.model.state_dict().items():
        torch.testing.assert_close(r0["state"][name], value, rtol=1e-4, atol=1e-6, msg=name)
        moved += int(not torch.equal(init[name], value))
    assert moved > 0
    # Evaluation is sharded over ranks and gathered: same score as one process.
    assert abs(r0["evals"][0][1] - result.evaluations[0][1]) < 1e-4


def test_torchrun_one_rank_runs_the_multi_rank_path(mini_dataset, tmp_path, monkeypatch):
    """`torchrun --nproc-per-node 1` gets a process group of one, and the flat gradient
    sync all-reduces over it: the path several ranks take, with the same result as the
    same one process started without a launcher, bit for bit."""
    from scalefold.train import grad_sync as sync_mod
    from scalefold.train.distributed import discover

    speed = SpeedConfig(grad_sync="flat", fused_optimizer=True)
    os.environ.pop("RANK", None)
    mp.spawn(_rank_main, args=(1, _free_port(), mini_dataset, str(tmp_path), speed), nprocs=1,
             join=True)
    launched = torch.load(tmp_path / "rank0.pt")
    assert launched["process_group"]

    calls = []
    monkeypatch.setattr(sync_mod.FlatGradSync, "_attach",
                        lambda self, params, order=None, f=sync_mod.FlatGradSync._attach:
                        (calls.append(1), f(self, params, order))[1])
    cfg = _config(mini_dataset, tmp_path / "single", num_train_iters=3, val_every_iters=3,
                  resume=None, speed=speed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the rank ran: the same reduction order, the same bits
    try:
        single = Trainer(cfg, discover({}), torch.device("cpu"))
        _no_dropout(single.model)
        single.build_data()
        result = single.run()
    finally:
        torch.set_num_threads(threads)
    assert calls, "grad_sync='flat' on one rank must take the flat path too"
    for name, value in single.model.state_dict().items():
        assert torch.equal(launched["state"][name], value), name
    assert launched["evals"] == result.evaluations


# --- rank discovery: the launcher that started the process wins -------------------------

SBATCH = {  # what an sbatch job's batch step leaves to everything started inside it
    "SLURM_JOB_ID": "4242", "SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_LOCALID": "0",
    "SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_NODELIST": "gpu[007-008]",
}


def _ompi(rank: int, size: int = 16, per_node: int = 8) -> dict[str, str]:
    return {"OMPI_COMM_WORLD_RANK": str(rank), "OMPI_COMM_WORLD_SIZE": str(size),
            "OMPI_COMM_WORLD_LOCAL_RANK": str(rank % per_node),
            "OMPI_COMM_WORLD_LOCAL_SIZE": str(per_node)}


def _torchrun(rank: int, size: int = 4) -> dict[str, str]:
    return {"RANK": str(rank), "WORLD_SIZE": str(size), "LOCAL_RANK": str(rank),
            "LOCAL_WORLD_SIZE": str(size), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29400",
            "TORCHELASTIC_RUN_ID": "none", "GROUP_RANK": "0"}


def _fields(d: DistEnv) -> tuple:
    return (d.launcher, d.rank, d.world_size, d.local_rank, d.local_world_size, d.num_nodes)


def test_discover_each_launcher_alone():
    from scalefold.train.distributed import discover

    assert _fields(discover({})) == ("single", 0, 1, 0, 1, 1)
    t = discover(_torchrun(3))
    assert _fields(t) == ("torchrun", 3, 4, 3, 4, 1)
    assert (t.master_addr, t.master_port) == ("127.0.0.1", 29400)
    m = discover(_ompi(11))
    assert _fields(m) == ("mpi", 11, 16, 3, 8, 2)
    assert m.master_addr == ""  # unknown: learnt over MPI when the group is created
    assert discover({**_ompi(11), "MASTER_ADDR": "gpu007"}).master_addr == "gpu007"
    hydra = {"PMI_RANK": "5", "PMI_SIZE": "8", "MPI_LOCALRANKID": "1",
             "MPI_LOCALNRANKS": "4", "PMI_FD": "7"}  # MPICH / Intel MPI mpiexec
    assert _fields(discover(hydra)) == ("mpi", 5, 8, 1, 4, 2)
    cray = {"PMI_RANK": "6", "PMI_SIZE": "8", "PMI_LOCAL_RANK": "2", "PMI_LOCAL_SIZE": "4"}
    assert _fields(discover(cray)) == ("mpi", 6, 8, 2, 4, 2)
    srun = {**SBATCH, "SLURM_PROCID": "9", "SLURM_NTASKS": "16", "SLURM_LOCALID": "1",
            "SLURM_NTASKS_PER_NODE": "8(x2)", "SLURM_STEP_NODELIST": "gpu[007-008]",
            "MASTER_PORT": "24242"}
    s = discover(srun)
    assert _fields(s) == ("slurm", 9, 16, 1, 8, 2)
    assert (s.master_addr, s.master_port) == ("gpu007", 24242)
    # srun's MPI plugins set PMI_RANK / PMIX_RANK too, equal to SLURM_PROCID: still Slurm
    # (its node list names rank 0's host; no MPI exchange is needed).
    for plugin in ({"PMI_RANK": "9", "PMI_SIZE": "16", "PMI_FD": "5"},
                   {"PMIX_RANK": "9", "PMIX_NAMESPACE": "slurm.pmix.4242.0"}):
        assert _fields(discover({**srun, **plugin})) == ("slurm", 9, 16, 1, 8, 2)


@pytest.mark.parametrize("rank", [0, 1, 7, 8, 15])
def test_discover_mpirun_inside_sbatch_uses_the_mpi_ranks(rank):
    """Every rank of `mpirun -np 16` in an sbatch job inherits SLURM_PROCID=0 (or, on a
    remote node, the SLURM_PROCID of Open MPI's daemon step): the MPI rank wins."""
    from scalefold.train.distributed import discover

    for inherited in (SBATCH, {**SBATCH, "SLURM_PROCID": str(rank // 8), "SLURM_NTASKS": "2",
                               "SLURM_STEP_ID": "0"}):
        d = discover({**inherited, **_ompi(rank), "MASTER_ADDR": "gpu007"})
        assert _fields(d) == ("mpi", rank, 16, rank % 8, 8, 2)
        assert d.master_addr == "gpu007"
        hydra = {"PMI_RANK": str(rank), "PMI_SIZE": "16", "MPI_LOCALRANKID": str(rank % 8),
                 "MPI_LOCALNRANKS": "8"}
        assert _fields(discover({**inherited, **hydra})) == ("mpi", rank, 16, rank % 8, 8, 2)
    # The ranks are all different: no two processes believe they are the same rank.
    ranks = {discover({**SBATCH, **_ompi(r)}).rank for r in range(16)}
    assert ranks == set(range(16))


def test_discover_torchrun_wins_over_slurm_and_mpi():
    from scalefold.train.distributed import discover

    assert _fields(discover({**SBATCH, **_torchrun(2)})) == ("torchrun", 2, 4, 2, 4, 1)
    assert _fields(discover({**SBATCH, **_ompi(5), **_torchrun(2)})) == (
        "torchrun", 2, 4, 2, 4, 1)
    # RANK/WORLD_SIZE without torchrun's markers (set by hand or another tool) still beat
    # Slurm's inherited variables, but not an MPI launcher's own.
    plain = {"RANK": "1", "WORLD_SIZE": "2"}
    assert _fields(discover({**SBATCH, **plain})) == ("torchrun", 1, 2, 0, 2, 1)
    assert _fields(discover({**plain, **_ompi(5)}))[:2] == ("mpi", 5)


def test_mpi_launch_without_master_addr_needs_mpi4py(monkeypatch):
    import sys

    from scalefold.train.distributed import (
        RendezvousError,
        discover,
        init_process_group,
        resolve_master,
    )

    env = {**SBATCH, **_ompi(3)}
    denv = discover(env)
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # not installed
    with pytest.raises(RendezvousError, match="set MASTER_ADDR") as err:
        resolve_master(denv, env)
    assert "mpi4py" in str(err.value) and "rank 3 of 16" in str(err.value)
    for key in ("MASTER_ADDR", "RANK", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(RendezvousError, match="MASTER_ADDR"):
        init_process_group(denv, torch.device("cpu"))  # before any rendezvous is tried
    # With MASTER_ADDR in the environment (mpirun -x), nothing else is needed.
    given = resolve_master(denv, {**env, "MASTER_ADDR": "gpu007"})
    assert (given.master_addr, given.master_port) == ("gpu007", 29500)
    # Other launchers and one-rank MPI launches are returned as they are.
    for other in (discover(_torchrun(1)), discover({**SBATCH, "SLURM_NTASKS": "2"}),
                  discover(_ompi(0, size=1, per_node=1))):
        assert resolve_master(other, {}) is other


class _FakeComm:
    """mpi4py's COMM_WORLD as rank `rank` sees it; bcast returns what rank 0 sent."""

    def __init__(self, rank: int, from_root):
        self.rank, self.from_root, self.sent = rank, from_root, []

    def bcast(self, obj, root=0):
        assert root == 0
        self.sent.append(obj)
        return obj if self.rank == 0 else self.from_root


def _fake_mpi4py(monkeypatch, comm: _FakeComm) -> None:
    import sys
    import types

    mod = types.ModuleType("mpi4py")
    mod.MPI = types.SimpleNamespace(COMM_WORLD=comm)
    monkeypatch.setitem(sys.modules, "mpi4py", mod)


def test_mpi_launch_learns_rank_0s_host_over_mpi(monkeypatch):
    from scalefold.train.distributed import discover, resolve_master

    # Rank 0 sends its host name and, without MASTER_PORT, a free port of its own.
    root = _FakeComm(0, None)
    _fake_mpi4py(monkeypatch, root)
    env0 = {**SBATCH, **_ompi(0)}
    d0 = resolve_master(discover(env0), env0)
    assert d0.master_addr == socket.gethostname() and 1024 <= d0.master_port < 65536
    assert root.sent == [(d0.master_addr, d0.master_port)]
    # Every other rank takes what rank 0 sent, whatever its own host.
    other = _FakeComm(5, ("gpu007", 41234))
    _fake_mpi4py(monkeypatch, other)
    env5 = {**SBATCH, **_ompi(5)}
    d5 = resolve_master(discover(env5), env5)
    assert (d5.rank, d5.master_addr, d5.master_port) == (5, "gpu007", 41234)
    assert other.sent == [None]
    # A MASTER_PORT given to every rank is kept: only the host is broadcast.
    root = _FakeComm(0, None)
    _fake_mpi4py(monkeypatch, root)
    env0p = {**env0, "MASTER_PORT": "23456"}
    d0p = resolve_master(discover(env0p), env0p)
    assert d0p.master_port == 23456 and root.sent == [(socket.gethostname(), None)]


_MPI_SCRIPT = """
import torch, torch.distributed as dist
from scalefold.train.distributed import discover, init_process_group, shutdown_process_group
d = discover()
init_process_group(d, torch.device("cpu"))
x = torch.tensor([float(d.rank)])
dist.all_reduce(x)
print(f"rank={d.rank} world={d.world_size} launcher={d.launcher} sum={x.item():g}", flush=True)
shutdown_process_group()
"""


def _open_mpi_with_mpi4py() -> bool:
    import importlib.util
    import shutil
    import subprocess

    if shutil.which("mpirun") is None or importlib.util.find_spec("mpi4py") is None:
        return False
    out = subprocess.run(["mpirun", "--version"], capture_output=True, text=True, check=False)
    return "Open MPI" in out.stdout + out.stderr or "OpenRTE" in out.stdout + out.stderr


@pytest.mark.skipif(not _open_mpi_with_mpi4py(), reason="needs Open MPI's mpirun and mpi4py")
def test_real_mpirun_two_ranks_over_gloo(tmp_path):
    """Under a real mpirun (no MASTER_ADDR) with a batch step's SLURM_PROCID inherited:
    distinct ranks, rank 0's host learnt over MPI, and a gloo all-reduce across them."""
    import subprocess
    import sys

    script = tmp_path / "mpi_ranks.py"
    script.write_text(_MPI_SCRIPT)
    env = {k: v for k, v in os.environ.items()
           if k not in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE")
           and not k.startswith("SLURM_")}
    # The batch step's rank variables, not the job's (with those Open MPI would launch
    # through Slurm on the nodes they name).
    env.update({"SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_LOCALID": "0"})
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH"))
        if p)
    root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    proc = subprocess.run(
        ["mpirun", *root, "-np", "2", "--oversubscribe", "--bind-to", "none",
         sys.executable, str(script)],
        capture_output=True, text=True, env=env, timeout=240, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = sorted(ln for ln in proc.stdout.splitlines() if ln.startswith("rank="))
    assert lines == ["rank=0 world=2 launcher=mpi sum=1", "rank=1 world=2 launcher=mpi sum=1"]
