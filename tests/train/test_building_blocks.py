"""LR schedule, SWA/EMA, atomic checkpoints, rank discovery."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from scalefold.train.checkpointing import (
    list_checkpoints,
    load_latest_checkpoint,
    save_training_checkpoint,
)
from scalefold.train.distributed import _first_slurm_host, discover
from scalefold.train.schedule import LRSchedule
from scalefold.train.swa import WeightEMA


def test_lr_schedule_warmup_then_constant():
    s = LRSchedule(base_lr=1e-3, warmup_lr_init=1e-5, warmup_iters=5)
    lrs = [s.lr_at(i) for i in range(1, 8)]
    assert lrs[0] == pytest.approx(1e-5)
    assert lrs[4] == pytest.approx(1e-3)
    assert all(a < b for a, b in zip(lrs[:4], lrs[1:5]))
    assert lrs[5] == lrs[6] == 1e-3
    # The benchmark's default: no warm-up at all.
    assert LRSchedule(base_lr=2e-3, warmup_iters=0).lr_at(1) == 2e-3
    with pytest.raises(ValueError):
        s.lr_at(0)


def test_lr_schedule_pretraining_drop():
    s = LRSchedule.alphafold_pretraining()
    assert s.lr_at(1000) == pytest.approx(1e-3)
    assert s.lr_at(60_000) == 1e-3
    assert s.lr_at(60_001) == 5e-5


def test_weight_ema_matches_formula_and_round_trips():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    ema = WeightEMA(model, decay=0.9)
    w0 = model.weight.detach().clone()
    ema.update(model)  # first update copies
    assert torch.equal(ema.shadow[0], w0)
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    torch.testing.assert_close(ema.shadow[0], 0.9 * w0 + 0.1 * (w0 + 1.0))
    other = WeightEMA(nn.Linear(3, 2), decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.decay == 0.9 and other.num_updates == 2
    target = nn.Linear(3, 2)
    other.copy_to(target)
    torch.testing.assert_close(target.weight, ema.shadow[0])
    with pytest.raises(ValueError):
        WeightEMA(nn.Linear(4, 2), 0.9).load_state_dict(ema.state_dict())


def test_checkpoints_are_atomic_keep_last_and_skip_corrupt(tmp_path):
    for it in (10, 20, 30):
        save_training_checkpoint(tmp_path, it, {"x": torch.tensor([it])}, keep_last=2)
    assert [i for i, _ in list_checkpoints(tmp_path)] == [20, 30]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert load_latest_checkpoint(tmp_path)["x"].item() == 30
    # A torn newest file is skipped with a warning, and the previous one is used.
    (tmp_path / "step_00000030.pt").write_bytes(b"\x80\x02garbage")
    assert load_latest_checkpoint(tmp_path)["iteration"] == 20
    assert load_latest_checkpoint(tmp_path / "missing") is None


def test_discover_launchers():
    assert discover({}).world_size == 1
    t = discover({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4",
                  "MASTER_ADDR": "n0", "MASTER_PORT": "1234"})
    assert (t.rank, t.world_size, t.local_rank, t.launcher, t.master_port, t.num_nodes) == (
        3, 8, 1, "torchrun", 1234, 2)
    s = discover({"SLURM_PROCID": "9", "SLURM_NTASKS": "16", "SLURM_LOCALID": "1",
                  "SLURM_JOB_NUM_NODES": "2", "SLURM_NTASKS_PER_NODE": "8(x2)",
                  "SLURM_JOB_NODELIST": "eos[0012-0013]"})
    assert (s.rank, s.world_size, s.local_rank, s.local_world_size, s.master_addr) == (
        9, 16, 1, 8, "eos0012")
    m = discover({"OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_SIZE": "4",
                  "OMPI_COMM_WORLD_LOCAL_RANK": "2", "OMPI_COMM_WORLD_LOCAL_SIZE": "4"})
    assert (m.rank, m.world_size, m.launcher) == (2, 4, "mpi")
    assert _first_slurm_host("login1") == "login1"
    assert _first_slurm_host("gpu[3,5-7],x") == "gpu3"
