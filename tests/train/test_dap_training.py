"""Training with DAP 2 (one sample split over two gloo ranks) follows one-process training,
with the gradients combined by DDP or by one flat all-reduce."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from scalefold.train.config import SpeedConfig
from scalefold.train.distributed import (
    DistEnv,
    discover,
    init_process_group,
    shutdown_process_group,
)
from scalefold.train.topology import make_topology
from scalefold.train.trainer import Trainer

from .test_distributed import _free_port
from .test_trainer import _config

STEPS = 3


def _cfg(mini, out: Path, dap: int, speed: SpeedConfig | None = None):
    # 24 residues and 6 + 2 MSA rows: divisible by the DAP size, as the benchmark's are.
    return _config(mini, out, num_train_iters=STEPS, val_every_iters=STEPS, resume=None,
                   dap_size=dap, crop_size=24, speed=speed or SpeedConfig())


def _losses(trainer: Trainer) -> list[float]:
    losses: list[float] = []
    trainer.on_event = lambda n, d: losses.append(d["step"].loss) if n == "step" else None
    trainer.run()
    return losses


def _assert_losses_follow(got_file: Path, single: Trainer) -> None:
    """The DAP run's per-step losses (rank 0 wrote them) match one process's run."""
    single.build_data()
    ref = _losses(single)
    got = json.loads(got_file.read_text())
    assert len(got) == len(ref) == STEPS
    for a, b in zip(got, ref, strict=True):
        assert abs(a - b) <= 1e-4 * abs(b), (got, ref)


def _main(rank: int, port: int, mini, out: str, speed: SpeedConfig) -> None:
    torch.set_num_threads(1)
    denv = DistEnv(rank=rank, world_size=2, local_rank=rank, local_world_size=2,
                   launcher="torchrun", master_addr="127.0.0.1", master_port=port)
    init_process_group(denv, torch.device("cpu"))
    try:
        topo = make_topology(denv, 0, dap_size=2)
        t = Trainer(_cfg(mini, Path(out) / "dap", 2, speed), denv, torch.device("cpu"),
                    topology=topo)
        assert t.global_batch_size == 1  # two ranks, one sample
        # the single-pass update runs where asked (the Triton interpreter here)
        assert (t.built.step.single_pass is not None) == speed.single_pass_update
        t.build_data()
        losses = _losses(t)
        if rank == 0:
            (Path(out) / "dap.json").write_text(json.dumps(losses))
            torch.save(t.model.state_dict(), Path(out) / "dap.pt")
    finally:
        shutdown_process_group()


def _assert_follows_single_process(mini, out: Path) -> None:
    """The DAP run's losses and final weights (rank 0 wrote them to `out`) against one
    process's run with PyTorch's update."""
    single = Trainer(_cfg(mini, out / "one", 1), discover({}), torch.device("cpu"))
    _assert_losses_follow(out / "dap.json", single)
    # Parameters after three Adam steps: close overall (Adam may turn float noise in
    # exactly-zero gradients into lr-sized moves of a few entries, hence the norm test).
    dap = torch.load(out / "dap.pt")
    num = sum((dap[k] - v).float().norm() ** 2 for k, v in single.model.state_dict().items())
    den = sum(v.float().norm() ** 2 for v in single.model.state_dict().values())
    assert (num / den).sqrt() < 1e-3


@pytest.mark.parametrize("grad_sync", ["ddp", "flat", "bucketed"])
def test_dap2_training_follows_single_process(mini_dataset, tmp_path, grad_sync):
    mp.spawn(_main, args=(_free_port(), mini_dataset, str(tmp_path),
                          SpeedConfig(grad_sync=grad_sync)), nprocs=2, join=True)
    _assert_follows_single_process(mini_dataset, tmp_path)


def test_dap2_training_with_the_single_pass_update(mini_dataset, tmp_path, monkeypatch):
    """`h200`'s update (clip, Adam and EMA as one Triton pass over a table of the
    parameters) on DAP 2 ranks with the flat gradient sync, as the DAP configs run it; the
    ranks run the kernels in the Triton interpreter: the losses and weights follow one
    process with PyTorch's update."""
    pytest.importorskip("triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # the spawned ranks import Triton with it
    speed = SpeedConfig(grad_sync="flat", fused_optimizer=True, single_pass_update=True)
    mp.spawn(_main, args=(_free_port(), mini_dataset, str(tmp_path), speed), nprocs=2,
             join=True)
    _assert_follows_single_process(mini_dataset, tmp_path)
