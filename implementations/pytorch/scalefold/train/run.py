"""One timed benchmark run: process setup, MLPerf log, training until the target.

The order of the log follows the reference's: everything that builds the model and loads
the initial checkpoint is initialisation (`init_start` .. `init_stop`); the datasets are
indexed inside the timed region, as the reference does.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from scalefold.data import DataLayout
from scalefold.data.selection import TrainingSetConfig, ValidationSetConfig
from scalefold.losses import LossConfig
from scalefold.mlperf import DatasetFacts, MLPerfLogger, RunFacts, SubmissionInfo
from scalefold.mlperf.facts import INIT_LIMIT_S, sha256_of_file
from scalefold.train.config import TrainConfig
from scalefold.train.distributed import (
    DistEnv,
    discover,
    init_process_group,
    shutdown_process_group,
)
from scalefold.train.rundir import RunLock, agree_on_seed
from scalefold.train.stop import StopSignal
from scalefold.train.topology import make_topology
from scalefold.train.trainer import RunResult, Trainer


@dataclass(frozen=True)
class RunOutcome:
    result: RunResult
    rank: int
    world_size: int


def init_report(seconds: float) -> str:
    """The initialisation's length against the rules' limit (compliance/check.py rejects a
    log at or over it): a run that will not count says so when its timed region starts."""
    text = f"initialisation {seconds / 60:.1f} min"
    if seconds >= INIT_LIMIT_S:
        return (f"{text}: WARNING: the rules allow under {INIT_LIMIT_S / 60:.0f} min; "
                "compliance/check.py will reject this run as a result")
    return f"{text} (the rules allow under {INIT_LIMIT_S / 60:.0f})"


def select_device(denv: DistEnv, kind: str = "auto") -> torch.device:
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is visible to this process")
    if kind != "cpu" and torch.cuda.is_available():
        device = torch.device("cuda", denv.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
        return device
    return torch.device("cpu")


def run_facts(cfg: TrainConfig, trainer: Trainer, checkpoint_sha256: str | None) -> RunFacts:
    """Every logged hyper-parameter, read from the objects this run built."""
    tr, va = TrainingSetConfig(), ValidationSetConfig()
    return RunFacts(
        seed=cfg.seed,
        number_of_ranks=trainer.denv.world_size,
        global_batch_size=trainer.global_batch_size,
        gradient_accumulation_steps=1,
        target_avg_lddt_ca_value=cfg.target_avg_lddt_ca,
        train_max_pdb_release_date=tr.max_release_date,
        val_min_cameo_submission_date=va.min_cameo_submission_date,
        val_max_cameo_submission_date=va.max_cameo_submission_date,
        val_max_sequence_length=va.max_sequence_length,
        val_every_iters=cfg.val_every_iters,
        precision=cfg.precision,
        train_sequence_crop_size=cfg.crop_size,
        num_recycling_iters=cfg.num_recycling_iters,
        max_msa_clusters=cfg.max_msa_clusters,
        max_extra_msa=cfg.max_extra_msa,
        templates_enabled=trainer.model_config.template.enabled,
        max_templates=cfg.max_templates,
        **LossConfig.mlperf().mlperf_log_hparams(),
        opt_name="Adam",
        opt_base_learning_rate=trainer.schedule.base_lr,
        opt_adam_beta_1=trainer.optimizer.defaults["betas"][0],
        opt_adam_beta_2=trainer.optimizer.defaults["betas"][1],
        opt_adam_epsilon=trainer.optimizer.defaults["eps"],
        opt_weight_decay=float(trainer.optimizer.defaults["weight_decay"]),
        opt_amsgrad=bool(trainer.optimizer.defaults["amsgrad"]),
        opt_gradient_clipping=cfg.gradient_clip_norm > 0,
        opt_gradient_clip_norm=cfg.gradient_clip_norm,
        opt_learning_rate_warmup_init=trainer.schedule.warmup_lr_init,
        opt_learning_rate_warmup_steps=trainer.schedule.warmup_iters,
        init_checkpoint_sha256sum=checkpoint_sha256,
        swa_enabled=True,
        swa_decay_rate=trainer.swa.decay,
        model_parameters_count=trainer.num_parameters,
        initial_training_dataloader_type=cfg.loader,
    )


RESUMED_KEY = "scalefold_resumed_from_iteration"  # compliance/check.py rejects such logs


def run_training(cfg: TrainConfig, *, mlperf_stdout: bool = False,
                 observe: Callable[[str, dict], None] | None = None) -> RunOutcome:
    """`observe`: sees every trainer event after the log does (`scalefold bench train`).

    Stops cleanly on SIGTERM/SIGUSR1: every rank stops after the same step, the log gets
    `run_stop` with status "aborted", and a checkpoint is written if
    `cfg.checkpoint_on_stop` asks for one.
    """
    denv = discover()
    device = select_device(denv, cfg.device)
    init_process_group(denv, device)
    stop = StopSignal().install()
    lock: RunLock | None = None
    log: MLPerfLogger | None = None
    trainer: Trainer | None = None
    try:
        topo = make_topology(denv, cfg.num_async_eval_ranks, cfg.dap_size)
        cfg = dataclasses.replace(cfg, seed=agree_on_seed(cfg.seed, denv))
        if denv.rank == 0:
            lock = RunLock(Path(cfg.output_dir)).acquire()
            (Path(cfg.output_dir) / "seed").write_text(f"{cfg.seed}\n")
        writes = cfg.mlperf.path is not None or mlperf_stdout
        # The training leader opens the log; with asynchronous evaluation the evaluation
        # leader appends its eval_* lines and run_stop to the same log.
        log = MLPerfLogger(cfg.mlperf.path, enabled=denv.rank == 0 and writes,
                           stdout=mlperf_stdout, instance=0)
        log.init_start()
        init_t0 = time.monotonic()
        # The data is checked inside the initialisation window, before anything is built:
        # a fault that would stop the run stops it here, naming the file.
        check_data(cfg)
        log.cache_clear(os.environ.get("CLEAR_CACHES", "0") == "1")
        gpus_per_node = denv.local_world_size if device.type == "cuda" else 0
        log.log_submission(SubmissionInfo(
            benchmark="openfold", org=cfg.mlperf.org, division=cfg.mlperf.division,
            status=cfg.mlperf.status, platform=cfg.mlperf.platform,
            number_of_nodes=denv.num_nodes, accelerators_per_node=gpus_per_node,
        ))
        checkpoint_sha = (
            sha256_of_file(cfg.initialize_parameters_from)
            if cfg.initialize_parameters_from is not None else None
        )
        trainer = Trainer(cfg, denv, device, on_event=_LogEvents(log, observe), topology=topo)
        trainer.stop_requested = lambda: stop.requested
        log.log_run_facts(run_facts(cfg, trainer, checkpoint_sha))
        report = trainer.check_data()
        if denv.rank == 0:
            print(f"[scalefold] {report.summary()}", flush=True)
        resumed = trainer.maybe_resume()
        if resumed is not None:
            # Not a fresh run: its time to train is not a result, and the log says so.
            log.event(RESUMED_KEY, resumed)
        trainer.prepare()  # CUDA-graph capture: initialisation, not time to train
        log.init_stop()
        if denv.rank == 0:
            print(f"[scalefold] {init_report(time.monotonic() - init_t0)}", flush=True)
        log.run_start()
        if topo.is_async:
            if denv.is_distributed:
                torch.distributed.barrier()  # the log file exists before anyone appends
            if topo.is_eval_rank:
                log.close()
                log = MLPerfLogger(cfg.mlperf.path, enabled=denv.rank == topo.eval_leader
                                   and writes, stdout=mlperf_stdout, instance=0, append=True)
                log.join_run()
                trainer.on_event = _LogEvents(log, observe)
        trainer.build_data()
        if not topo.is_eval_rank:
            log.log_dataset(DatasetFacts(
                train_samples=len(trainer.train_dataset), eval_samples=len(trainer.val_dataset),
            ))
        if topo.is_eval_rank:
            result = trainer.serve_evaluations()
            if not result.reached_target:  # success was logged at the evaluation itself
                log.run_stop("aborted")
        else:
            result = trainer.run()
            if trainer.stopped_by_signal and not result.reached_target:
                log.run_stop("aborted")
            elif not topo.is_async:
                log.run_stop("success" if result.reached_target else "aborted")
            trainer.close()  # a checkpoint still being written reaches the disk
        return RunOutcome(result, denv.rank, denv.world_size)
    finally:
        stop.uninstall()
        if log is not None:
            log.close()
        if lock is not None:
            lock.release()
        shutdown_process_group()  # also a torchrun launch of one rank


def check_data(cfg: TrainConfig) -> None:
    """What a run checks before it builds anything: the data layout (the whole dataset
    check, `Trainer.check_data`, follows once the model is built)."""
    DataLayout(Path(cfg.data_dir)).check()


class _LogEvents:
    """Turns the trainer's events into MLPerf log lines."""

    def __init__(self, log: MLPerfLogger,
                 observe: Callable[[str, dict], None] | None = None) -> None:
        self.log = log
        self.observe = observe

    def __call__(self, name: str, data: dict) -> None:
        self._log(name, data)
        if self.observe is not None:
            self.observe(name, data)

    def _log(self, name: str, data: dict) -> None:
        log = self.log
        if name == "cycle_start":
            log.epoch_start(data["epoch_num"])
        elif name == "cycle_stop":
            log.epoch_stop(data["epoch_num"])
            log.throughput(data["cycle"], data["samples_per_second"])
        elif name == "eval_start":
            log.eval_start(data["epoch_num"])
        elif name == "eval_accuracy":
            log.eval_accuracy(data["value"], data["epoch_num"])
        elif name == "eval_stop":
            log.eval_stop(data["epoch_num"])
        elif name == "target_reached":
            # With asynchronous evaluation the time to train ends at this evaluation.
            log.run_stop("success")
