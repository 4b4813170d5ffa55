"""DAP 2 inside CUDA graphs (NCCL collectives captured in the forward/backward graph)
follows one-process training. Needs two GPUs: skipped elsewhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from scalefold.cli import main
from scalefold.train.config import SpeedConfig
from scalefold.train.distributed import (
    DistEnv,
    discover,
    init_process_group,
    shutdown_process_group,
)
from scalefold.train.topology import make_topology
from scalefold.train.trainer import Trainer

from .test_dap_training import _assert_losses_follow, _cfg, _losses
from .test_distributed import _free_port

pytestmark = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")

GRAPHED = SpeedConfig(fused_optimizer=True, cuda_graphs=True, grad_sync="flat")


def _main(rank: int, port: int, mini, out: str) -> None:
    device = torch.device("cuda", rank)
    torch.cuda.set_device(device)
    denv = DistEnv(rank=rank, world_size=2, local_rank=rank, local_world_size=2,
                   launcher="torchrun", master_addr="127.0.0.1", master_port=port)
    init_process_group(denv, device)
    try:
        topo = make_topology(denv, 0, dap_size=2)
        t = Trainer(_cfg(mini, Path(out) / "dap", 2, speed=GRAPHED), denv, device,
                    topology=topo)
        t.prepare()
        t.build_data()
        losses = _losses(t)
        if rank == 0:
            (Path(out) / "dap.json").write_text(json.dumps(losses))
    finally:
        shutdown_process_group()


def test_dap2_in_cuda_graphs_follows_single_process(mini_dataset, tmp_path):
    mp.spawn(_main, args=(_free_port(), mini_dataset, str(tmp_path)), nprocs=2, join=True)
    single = Trainer(_cfg(mini_dataset, tmp_path / "one", 1, speed=GRAPHED), discover({}),
                     torch.device("cuda", 0))
    single.prepare()
    _assert_losses_follow(tmp_path / "dap.json", single)


def test_bench_dap_graph_variant_on_two_gpus(tmp_path):
    out = tmp_path / "dap.json"
    rc = main(["bench", "dap", "--preset", "tiny", "--device", "cuda", "--dap-sizes", "1,2",
               "--variant", "eager@fp32+fused_optimizer+cuda_graphs", "--warmup", "1", "--steps", "3",
               "--json", str(out)])
    assert rc == 0
    one, two = json.loads(out.read_text())["results"]
    assert one["error"] is None and two["error"] is None
    assert two["first_loss"] == pytest.approx(one["first_loss"], rel=1e-4)
    assert two["last_loss"] == pytest.approx(one["last_loss"], rel=1e-4)
    assert two["comm_calls"]["all_to_all"] > 0
