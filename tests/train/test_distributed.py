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
            torch.save({"state": t.model.state_dict(), "evals": result.evaluations},
                       Path(out) / f"rank{rank}.pt")
        else:
            torch.save({"state": t.model.state_dict()}, Path(out) / f"rank{rank}.pt")
    finally:
        shutdown_process_group()


@pytest.mark.parametrize("speed", [
    SpeedConfig(),  # DDP hooks, clip then Adam
    SpeedConfig(grad_sync="flat", fused_optimizer=True),  # the CUDA-graph layout, eager
], ids=["ddp", "flat+fused"])
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
