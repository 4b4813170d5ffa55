"""Asynchronous evaluation: 2 training ranks + 1 evaluation rank report the same
accuracies as synchronous evaluation of the same weights, and the log is one run; only the
weights travel on the default group (NCCL on GPUs), every small message on gloo."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from scalefold.train.distributed import DistEnv, init_process_group, shutdown_process_group
from scalefold.train.topology import make_topology
from scalefold.train.trainer import Trainer

from .test_distributed import _free_port, _no_dropout
from .test_trainer import _config


def _record_point_to_point(log: list) -> None:
    """Wrap this process's point-to-point calls to note which group and tensor each used."""
    for name in ("send", "recv", "isend", "irecv"):
        original = getattr(dist, name)

        def wrapped(tensor, *args, _name=name, _original=original, **kwargs):
            group = kwargs.get("group")
            default = group is None or group is dist.group.WORLD
            log.append({"op": _name, "default_group": default,
                        "backend": str(dist.get_backend(group)),
                        "dtype": str(tensor.dtype), "numel": tensor.numel(),
                        "device": tensor.device.type})
            return _original(tensor, *args, **kwargs)

        setattr(dist, name, wrapped)


def _main(rank: int, world: int, async_ranks: int, port: int, mini, out: str, tag: str):
    torch.set_num_threads(1)
    messages: list = []
    _record_point_to_point(messages)
    denv = DistEnv(rank=rank, world_size=world, local_rank=rank, local_world_size=world,
                   launcher="torchrun", master_addr="127.0.0.1", master_port=port)
    init_process_group(denv, torch.device("cpu"))
    try:
        topo = make_topology(denv, async_ranks)
        cfg = _config(mini, Path(out) / tag, num_train_iters=4, val_every_iters=2,
                      resume=None, num_async_eval_ranks=async_ranks,
                      val_chain_ids=("5pti_A", "1bd2_C", "3kpr_C"))
        t = Trainer(cfg, denv, torch.device("cpu"), topology=topo)
        _no_dropout(t.model)
        # Same noise on every rank: a model whose structure is not collapsed at the origin,
        # so the scores depend on the weights and the comparison means something.
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in t.model.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
        t.build_data()
        result = t.serve_evaluations() if topo.is_eval_rank else t.run()
        if rank == topo.eval_leader:
            (Path(out) / f"{tag}.json").write_text(json.dumps(result.evaluations))
        n_weights = sum(p.numel() for p in t.model.parameters())
        control = (dist.get_world_size(topo.control_group)
                   if rank in (0, topo.eval_leader) and topo.is_async else 0)
        (Path(out) / f"{tag}_p2p_{rank}.json").write_text(
            json.dumps({"weights": n_weights, "messages": messages, "control": control}))
    finally:
        shutdown_process_group()


def test_async_evaluation_matches_synchronous(mini_dataset, tmp_path):
    mp.spawn(_main, args=(2, 0, _free_port(), mini_dataset, str(tmp_path), "sync"),
             nprocs=2, join=True)
    mp.spawn(_main, args=(3, 1, _free_port(), mini_dataset, str(tmp_path), "async"),
             nprocs=3, join=True)
    sync = json.loads((tmp_path / "sync.json").read_text())
    asyn = json.loads((tmp_path / "async.json").read_text())
    assert [it for it, _ in sync] == [2, 4]
    assert [it for it, _ in asyn] == [2, 4]
    for (_, a), (_, b) in zip(sync, asyn, strict=True):
        assert abs(a - b) < 1e-5
    assert sync[0][1] != sync[1][1]  # the weights changed between the evaluations

    # Under NCCL, a receive posted early holds the pair's stream: the trainer's standing
    # receive of the stop signal must not share a group with the weights it sends.
    weights_seen = 0
    for rank in range(3):
        record = json.loads((tmp_path / f"async_p2p_{rank}.json").read_text())
        # Only the two ranks that talk share the gloo group (at scale, not thousands).
        assert record["control"] == (2 if rank in (0, 2) else 0)
        for m in record["messages"]:
            if m["default_group"]:
                assert (m["dtype"], m["numel"]) == ("torch.float32", record["weights"]), m
                assert m["op"] in ("isend", "recv"), m
                weights_seen += 1
            else:
                assert (m["backend"], m["device"]) == ("gloo", "cpu"), m
    assert weights_seen == 4  # two evaluation points, each a send and a receive



# --- the whole run (train/run.py) with an evaluation rank, as torchrun starts it ---------

_RUN_ITERS = 8  # evaluations after steps 2, 4, 6 and 8 unless the target stops the run


def _run_main(rank: int, world: int, port: int, mini, out: str) -> None:
    """One rank of `scalefold train`: the launcher's variables, then `run_training`."""
    from scalefold.train.config import MLPerfLogConfig
    from scalefold.train.run import run_training

    torch.set_num_threads(1)
    os.environ.update({
        "RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
        "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
        "TORCHELASTIC_RUN_ID": "test", "GROUP_RANK": "0",  # what torchrun adds
    })
    events: list = []

    def observe(name: str, data: dict) -> None:  # the plain values of every event
        events.append([name, {k: v for k, v in data.items()
                              if isinstance(v, (bool, int, float, str))}])

    cfg = _config(mini, Path(out) / "run", device="cpu", num_train_iters=_RUN_ITERS,
                  val_every_iters=2, checkpoint_every_iters=0, resume=None,
                  num_async_eval_ranks=1, target_avg_lddt_ca=0.0,
                  mlperf=MLPerfLogConfig(path=Path(out) / "mlperf.log"))
    outcome = run_training(cfg, observe=observe)
    (Path(out) / f"rank{rank}.json").write_text(json.dumps({
        "rank": outcome.rank, "world": outcome.world_size,
        "reached_target": outcome.result.reached_target,
        "iterations": outcome.result.iterations,
        "evaluations": outcome.result.evaluations, "events": events,
    }))


@pytest.fixture(scope="module")
def async_run(mini_dataset, tmp_path_factory) -> dict:
    """`run_training` on 2 ranks over gloo: rank 0 trains, rank 1 evaluates, and a target
    of 0 is reached by the first evaluation (~15 s on 2 cores)."""
    out = tmp_path_factory.mktemp("async_run")
    mp.spawn(_run_main, args=(2, _free_port(), mini_dataset, str(out)), nprocs=2, join=True)
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    return {"trainer": ranks[0], "evaluator": ranks[1], "log": out / "mlperf.log"}


def _named(record: dict, name: str) -> list:
    return [data for event, data in record["events"] if event == name]


def test_run_training_with_an_evaluation_rank_reaches_the_target(async_run):
    trainer, evaluator = async_run["trainer"], async_run["evaluator"]
    assert (trainer["rank"], evaluator["rank"], trainer["world"]) == (0, 1, 2)
    # The first evaluation (of the weights after step 2) reaches the target.
    assert evaluator["reached_target"] and evaluator["evaluations"][0][0] == 2
    assert _named(evaluator, "target_reached") == [{"iteration": 2}]
    # Only the evaluation rank evaluates; only the trainer trains.
    assert not _named(trainer, "eval_accuracy") and not _named(trainer, "target_reached")
    assert _named(trainer, "step") and not _named(evaluator, "step")


# Both leaders write the one log: the training leader's lines must never overwrite the
# evaluation leader's (the log is opened in append mode by both).
def test_run_training_with_an_evaluation_rank_logs_one_successful_run(async_run):
    from scalefold.mlperf import parse_log

    evaluator = async_run["evaluator"]
    log = parse_log(async_run["log"])
    keys = [ln.key for ln in log]
    # The training leader's lines are there (it opened the log) ...
    assert keys.count("init_start") == 1 and keys.count("run_start") == 1
    assert "epoch_start" in keys
    # ... one run_stop, the evaluation leader's success ...
    stops = [ln for ln in log if ln.key == "run_stop"]
    assert len(stops) == 1 and stops[0].metadata["status"] == "success"
    assert keys.index("run_start") < keys.index("run_stop")
    # ... and every eval_accuracy line the evaluation leader reported, in its order.
    logged = [(ln.value, ln.metadata["epoch_num"]) for ln in log if ln.key == "eval_accuracy"]
    reported = [(d["value"], d["epoch_num"]) for d in _named(evaluator, "eval_accuracy")]
    assert logged and logged == reported
    # run_stop is the first evaluation's success, logged right after it.
    first = keys.index("eval_accuracy")
    assert keys[first:first + 3] == ["eval_accuracy", "eval_stop", "run_stop"]


def test_run_training_trainer_stops_at_the_target(async_run):
    """The trainers see the evaluation leader's stop (through the store, polled by rank 0
    every step) and stop long before num_train_iters."""
    trainer = async_run["trainer"]
    assert trainer["reached_target"] and trainer["iterations"] < _RUN_ITERS
