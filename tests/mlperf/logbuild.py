"""Drives MLPerfLogger through whole runs, as a training loop would, for the tests.

The inputs are those of the official dataset and checkpoint (BENCHMARK_RULES.md), given
to the logger the way the training loop gives them: as facts, never derived by it.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from scalefold.mlperf import DatasetFacts, MLPerfLogger, RunFacts, SubmissionInfo

# Facts of the official data and checkpoint, as BENCHMARK_RULES.md states them.
OFFICIAL_TRAIN_SAMPLES = 594595
OFFICIAL_EVAL_SAMPLES = 180
OFFICIAL_PARAMETERS = 93229082
OFFICIAL_CHECKPOINT_SHA256 = "b518be4677048f2c0f94889c91e2da73655a73b825a8aa7f8b6f5e580d8ffbed"


class FakeClock:
    """Seconds since the epoch that move only when told, so logs have real durations."""

    def __init__(self, start: float) -> None:
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def closed_submission(nodes: int = 260, gpus: int = 8, org: str = "ScaleFold") -> SubmissionInfo:
    return SubmissionInfo(
        benchmark="openfold",
        org=org,
        division="closed",
        status="onprem",
        platform=f"{nodes}xNVIDIA DGX H100",
        number_of_nodes=nodes,
        accelerators_per_node=gpus,
    )


def closed_facts(seed: int, *, global_batch_size: int = 256, ranks: int = 2080) -> RunFacts:
    return RunFacts(
        seed=seed,
        number_of_ranks=ranks,
        global_batch_size=global_batch_size,
        gradient_accumulation_steps=1,
        target_avg_lddt_ca_value=0.8,
        train_max_pdb_release_date="2021-09-16",
        val_min_cameo_submission_date="2021-09-17",
        val_max_cameo_submission_date="2021-12-11",
        val_max_sequence_length=700,
        val_every_iters=40,
        precision="bf16",
        train_sequence_crop_size=256,
        num_recycling_iters=3,
        max_msa_clusters=124,
        max_extra_msa=1024,
        templates_enabled=True,
        max_templates=4,
        fape_loss_weight=1.0,
        fape_loss_backbone_weight=0.5,
        fape_loss_sidechain_weight=0.5,
        supervised_chi_loss_weight=1.0,
        distogram_loss_weight=0.3,
        masked_msa_loss_weight=2.0,
        plddt_loss_weight=0.01,
        opt_name="Adam",
        opt_base_learning_rate=1e-3,
        opt_adam_beta_1=0.9,
        opt_adam_beta_2=0.999,
        opt_adam_epsilon=1e-6,
        opt_weight_decay=0.0,
        opt_amsgrad=False,
        opt_gradient_clipping=True,
        opt_gradient_clip_norm=0.1,
        opt_learning_rate_warmup_init=1e-5,
        opt_learning_rate_warmup_steps=0,
        init_checkpoint_sha256sum=OFFICIAL_CHECKPOINT_SHA256,
        swa_enabled=True,
        swa_decay_rate=0.9,
        model_parameters_count=OFFICIAL_PARAMETERS,
        initial_training_dataloader_type="InitialTrainingDataloaderPQ",
    )


def official_dataset() -> DatasetFacts:
    return DatasetFacts(train_samples=OFFICIAL_TRAIN_SAMPLES, eval_samples=OFFICIAL_EVAL_SAMPLES)


def open_submission() -> SubmissionInfo:
    return SubmissionInfo(
        benchmark="openfold",
        org="ScaleFold",
        division="open",
        status="research",
        platform="1xCPU (2 cores, mini dataset)",
        number_of_nodes=1,
        accelerators_per_node=0,
    )


def open_facts(seed: int) -> RunFacts:
    """A small model trained from scratch on a mini dataset: its own true values."""
    return replace(
        closed_facts(seed, global_batch_size=2, ranks=2),
        precision="fp32",
        train_sequence_crop_size=64,
        max_msa_clusters=16,
        max_extra_msa=32,
        max_templates=2,
        val_every_iters=20,
        init_checkpoint_sha256sum=None,
        model_parameters_count=1_234_567,
        initial_training_dataloader_type="InitialTrainingDataloaderPT",
    )


def accuracy_curve(seed: int, cycles_to_target: int, target: float = 0.8) -> list[float]:
    """Mean lDDT-Ca per evaluation rising from ~0.70 and first reaching `target` at
    evaluation number `cycles_to_target` (like the reference's curve)."""
    rng = random.Random(seed)
    out = []
    for i in range(cycles_to_target - 1):
        base = 0.70 + (target - 0.004 - 0.70) * i / max(1, cycles_to_target - 2)
        out.append(min(target - 0.0005, base + rng.uniform(-0.003, 0.003)))
    out.append(target + rng.uniform(0.0005, 0.005))
    return out


@dataclass(frozen=True)
class Timing:
    init_s: float = 240.0  # compilation, graph capture, checkpoint load
    staging_s: float = 1e-6
    dataset_s: float = 10.0  # datasets are built inside the timed region
    step_s: float = 0.68  # public 260-node result: ~0.68 s per step
    eval_s: float = 25.0


def write_run(
    path: Path | None,
    *,
    submission: SubmissionInfo,
    facts: RunFacts,
    dataset: DatasetFacts,
    accuracies: Sequence[float],
    start_time: float,
    timing: Timing = Timing(),
    stdout: bool = False,
    cache_cleared: bool = True,
) -> Path | None:
    """One run with synchronous evaluation, in the order of the reference's log."""
    clock = FakeClock(start_time)
    samples_per_cycle = facts.val_every_iters * facts.global_batch_size
    with MLPerfLogger(path, enabled=True, stdout=stdout, instance=0, clock=clock) as log:
        log.init_start()
        log.cache_clear(cache_cleared)
        log.log_submission(submission)
        log.log_run_facts(facts)
        log.staging_start()
        clock.advance(timing.staging_s)
        log.staging_stop(timing.staging_s)
        log.tracked_stats(0, {"staging_duration": timing.staging_s})
        clock.advance(timing.init_s)
        log.init_stop()
        log.run_start()
        clock.advance(timing.dataset_s)
        log.log_dataset(dataset)
        status = "aborted"
        for cycle, acc in enumerate(accuracies, start=1):
            seen = cycle * samples_per_cycle
            log.epoch_start(seen)
            cycle_s = facts.val_every_iters * timing.step_s
            clock.advance(cycle_s)
            log.epoch_stop(seen)
            log.throughput(cycle, samples_per_cycle / cycle_s)
            log.eval_start(seen)
            clock.advance(timing.eval_s)
            log.eval_accuracy(acc, seen)
            log.eval_stop(seen)
            if acc >= facts.target_avg_lddt_ca_value:
                status = "success"
                break
        log.run_stop(status)
        assert log.problems() == [] or status != "success", log.problems()
    return path


def write_closed_run(path: Path, seed: int, cycles_to_target: int, start_time: float) -> Path:
    return write_run(
        path,
        submission=closed_submission(),
        facts=closed_facts(seed),
        dataset=official_dataset(),
        accuracies=accuracy_curve(seed, cycles_to_target),
        start_time=start_time,
    )


def write_open_run(path: Path, seed: int, start_time: float) -> Path:
    return write_run(
        path,
        submission=open_submission(),
        facts=open_facts(seed),
        dataset=DatasetFacts(train_samples=1000, eval_samples=10),
        accuracies=accuracy_curve(seed, 6),
        start_time=start_time,
        timing=Timing(init_s=5.0, dataset_s=1.0, step_s=0.5, eval_s=2.0),
    )


if __name__ == "__main__":
    # Stand-in for run_and_time.sh in the launch-script tests: one closed-division run on
    # stdout, with the seed the launcher chose.
    seed = int(os.environ["SEED"])
    write_run(
        None,
        submission=closed_submission(),
        facts=closed_facts(seed),
        dataset=official_dataset(),
        accuracies=accuracy_curve(seed, 13),
        start_time=1_700_000_000.0,
        stdout=True,
        cache_cleared=os.environ.get("CLEAR_CACHES") == "1",
    )
