"""Fault injection for a timed run's own hygiene (tiny preset, CPU): no run continues
another by accident, two runs never share a directory, checkpoints stay out of the timed
region unless asked for, signals stop a run cleanly, write failures name the file and the
cause, one rank prints and one seed is used. The cases: docs/FAULTS.md."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from scalefold.train.config import MLPerfLogConfig, TrainConfig

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def mini(mini_root: Path) -> Path:
    """The session's mini dataset (tests/faults/conftest.py); these tests only read it."""
    return mini_root


def _config(mini: Path, out: Path, **kw) -> TrainConfig:
    split = json.loads((mini / "mini_split.json").read_text())
    base = dict(
        data_dir=mini, output_dir=out, preset="tiny", precision="fp32", crop_size=16,
        max_msa_clusters=4, max_extra_msa=4, max_templates=1, num_recycling_iters=0,
        num_train_iters=4, val_every_iters=100, num_workers=0,
        train_chain_ids=tuple(split["train"]), val_chain_ids=("3pwp_C",), progress=False,
        seed=7, device="cpu",
    )
    base.update(kw)
    return TrainConfig(**base)


def _log_keys(path: Path) -> list[tuple[str, object]]:
    out = []
    for line in path.read_text().splitlines():
        if ":::MLLOG " in line:
            obj = json.loads(line.split(":::MLLOG ", 1)[1])
            out.append((obj["key"], obj.get("value")))
    return out


# --- implicit resume, duplicated runs --------------------------------------------------


def test_a_second_run_into_a_used_directory_is_refused_before_run_start(mini, tmp_path):
    from scalefold.train.run import run_training
    from scalefold.train.rundir import RunDirectoryError

    out = tmp_path / "run"
    run_training(_config(mini, out, checkpoint_every_iters=2))
    assert list((out / "checkpoints").glob("step_*.pt"))
    log = tmp_path / "second.log"
    cfg = _config(mini, out, mlperf=MLPerfLogConfig(path=log))
    with pytest.raises(RunDirectoryError, match="pass --resume"):
        run_training(cfg)
    assert "run_start" not in [k for k, _ in _log_keys(log)]


def test_a_resumed_run_says_so_and_the_checker_rejects_it(mini, tmp_path):
    from scalefold.train.run import RESUMED_KEY, run_training

    out = tmp_path / "run"
    run_training(_config(mini, out, checkpoint_every_iters=2, num_train_iters=2))
    log = tmp_path / "resumed.log"
    run_training(_config(mini, out, resume="latest", num_train_iters=4,
                         mlperf=MLPerfLogConfig(path=log)))
    keys = dict(_log_keys(log))
    assert keys[RESUMED_KEY] == 2
    sys.path.insert(0, str(ROOT / "compliance"))
    try:
        import check
    finally:
        sys.path.pop(0)
    run = check.read_run(log, "x", "strong")
    assert any("resumed from a checkpoint" in p for p in run.integrity_problems())
    # Two runs appended to one log are refused too.
    doubled = tmp_path / "doubled.log"
    doubled.write_text(log.read_text() * 2)
    assert any("more than one run" in p
               for p in check.read_run(doubled, "x", "strong").integrity_problems())


def test_two_runs_never_share_a_directory(tmp_path):
    from scalefold.train.rundir import RunDirectoryError, RunLock

    first = RunLock(tmp_path).acquire()
    with pytest.raises(RunDirectoryError, match="in use by another run"):
        RunLock(tmp_path).acquire()
    first.release()
    RunLock(tmp_path).acquire().release()
    # A lock left by a process of this host that has ended is taken over.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    import socket

    (tmp_path / ".scalefold.lock").write_text(f"host={socket.gethostname()} pid={dead}\n")
    RunLock(tmp_path).acquire().release()


# --- checkpoints ------------------------------------------------------------------------


def test_no_checkpoint_is_written_by_default(mini, tmp_path):
    from scalefold.train.run import run_training

    assert TrainConfig(data_dir=tmp_path, output_dir=tmp_path).checkpoint_every_iters == 0
    run_training(_config(mini, tmp_path / "run"))
    assert not list(tmp_path.rglob("step_*.pt"))


def test_checkpoints_go_where_asked_and_are_written_in_the_background(mini, tmp_path):
    from scalefold.train.checkpointing import AsyncCheckpointWriter
    from scalefold.train.run import run_training

    ckpts = tmp_path / "scratch" / "ckpt"
    run_training(_config(mini, tmp_path / "run", checkpoint_every_iters=2, checkpoint_dir=ckpts))
    assert sorted(p.name for p in ckpts.glob("step_*.pt")) == ["step_00000002.pt",
                                                                "step_00000004.pt"]
    assert not list((tmp_path / "run").rglob("step_*.pt"))
    # save() hands the write to a thread: it returns before the file exists.
    writer = AsyncCheckpointWriter(tmp_path / "w", keep_last=2)
    big = {"x": torch.zeros(8 << 20)}
    writer.save(1, big)
    started = not (tmp_path / "w" / "step_00000001.pt").exists()
    writer.close()
    assert (tmp_path / "w" / "step_00000001.pt").exists() and started


def test_a_full_disk_names_the_file_and_the_cause(tmp_path, monkeypatch):
    import tempfile

    from scalefold.train import checkpointing
    from scalefold.train.checkpointing import CheckpointWriteError

    def full_disk(*args, **kwargs):  # the kernel's own ENOSPC, from /dev/full
        return os.open("/dev/full", os.O_WRONLY), str(tmp_path / "never")

    monkeypatch.setattr(tempfile, "mkstemp", full_disk)
    target = tmp_path / "ckpt" / "step_00000001.pt"
    with pytest.raises(CheckpointWriteError, match="No space left on device") as err:
        checkpointing.atomic_torch_save({"x": torch.zeros(1024)}, target)
    assert str(target) in str(err.value)
    # Through the background writer, the error reaches the training thread.
    writer = checkpointing.AsyncCheckpointWriter(tmp_path / "ckpt", keep_last=1)
    writer.save(1, {"x": torch.zeros(4)})
    with pytest.raises(CheckpointWriteError, match="ENOSPC"):
        writer.close()


def test_an_mlperf_log_write_failure_stops_at_once_naming_the_file():
    from scalefold.mlperf.logger import MLPerfLogger, MLPerfLogWriteError

    log = MLPerfLogger("/dev/full", enabled=True)
    with pytest.raises(MLPerfLogWriteError, match="/dev/full.*No space left"):
        log.init_start()
    log.close()


# --- signals ----------------------------------------------------------------------------

TRAIN = [sys.executable, "-m", "scalefold.cli", "train", "--preset", "tiny", "--device", "cpu",
         "--precision", "fp32", "--crop-size", "16", "--max-msa-clusters", "4",
         "--max-extra-msa", "4", "--max-templates", "1", "--num-recycling-iters", "0",
         "--num-workers", "0", "--val-chain-ids", "3pwp_C", "--val-every-iters", "1000",
         "--num-train-iters", "1000", "--progress"]


def test_sigterm_stops_after_a_step_with_run_stop_aborted(mini, tmp_path):
    log = tmp_path / "log.txt"
    proc = subprocess.Popen([*TRAIN, "--data-dir", str(mini), "--output-dir", str(tmp_path / "r"),
                             "--mlperf-log", str(log), "--checkpoint-on-stop"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    deadline = time.time() + 240
    while time.time() < deadline and not (log.exists() and '"epoch_start"' in log.read_text()):
        time.sleep(0.5)
    time.sleep(2)  # a few steps
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 3, out[-2000:]  # the target was not reached
    assert "SIGTERM: stopping after the current step" in out
    assert "[scalefold] initialisation 0." in out and "(the rules allow under 30)" in out
    keys = _log_keys(log)
    stops = [v for k, v in keys if k == "run_stop"]
    assert len(stops) == 1
    text = log.read_text()
    assert '"status": "aborted"' in text.split('"run_stop"')[1]
    assert list((tmp_path / "r" / "checkpoints").glob("step_*.pt"))  # asked for one


def test_run_and_time_forwards_sigterm_and_prints_its_result_line(tmp_path):
    fake = tmp_path / "fake_python"
    fake.write_text(textwrap.dedent("""\
        #!/usr/bin/env bash
        trap 'echo "child got TERM"; exit 3' TERM
        echo "child running"
        while true; do sleep 0.1; done
    """))
    fake.chmod(0o755)
    env = dict(os.environ, SCALEFOLD_NO_SETUP="1", PYTHON=str(fake), DATADIR=str(tmp_path),
               RUNDIR=str(tmp_path / "runs"), SEED="5")
    proc = subprocess.Popen(["bash", "run_and_time.sh"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert "child got TERM" in out
    assert [ln for ln in out.splitlines() if ln.startswith("RESULT,OPENFOLD_HPC,5,")], out
    assert proc.returncode == 3


# --- ranks: progress and seed ---------------------------------------------------------


def test_only_the_global_rank_0_prints_progress(capsys):
    from scalefold.train.trainer import StepResult, _Progress, progress_mode

    assert progress_mode(False, None, True) == "off"
    assert progress_mode(False, True, False) == "off"
    assert progress_mode(True, False, True) == "off"
    assert progress_mode(True, None, False) == "lines"
    step = StepResult(iteration=10, loss=1.0, terms={}, num_recycling=0, seconds=0.1)
    quiet = _Progress("off")
    quiet.update(step)
    quiet.note("evaluation")
    assert capsys.readouterr().out == ""
    _Progress("lines").update(step)
    assert capsys.readouterr().out.startswith("step 10 ")


def _seed_rank(rank: int, world: int, port: int, out: str) -> None:
    from scalefold.train.distributed import DistEnv, init_process_group, shutdown_process_group
    from scalefold.train.rundir import agree_on_seed

    denv = DistEnv(rank=rank, world_size=world, local_rank=rank, local_world_size=world,
                   launcher="torchrun", master_port=port)
    init_process_group(denv, torch.device("cpu"))
    try:
        Path(out, f"seed{rank}").write_text(str(agree_on_seed(None, denv)))
    finally:
        shutdown_process_group()


def test_an_unset_seed_is_drawn_once_and_shared(tmp_path):
    import torch.multiprocessing as mp

    from scalefold.bench.spawn import free_port
    from scalefold.cli import build_parser, train_config_from_args

    args = build_parser().parse_args(["train", "--data-dir", str(tmp_path), "--seed", "random"])
    assert train_config_from_args(args).seed is None
    mp.spawn(_seed_rank, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    a, b = (tmp_path / "seed0").read_text(), (tmp_path / "seed1").read_text()
    assert a == b and int(a) >= 0
