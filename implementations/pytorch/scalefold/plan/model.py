"""`plan`: predicted time to train of a run shape on a cluster, from measured profiles.

Time to train of one run = the time line (scalefold.plan.timeline) of its steps to
target (scalefold.plan.rcp), with the step time of scalefold.plan.stepmodel and the
evaluation time of scalefold.plan.evaluation. A result is 10 runs: their olympic mean
(fastest and slowest dropped) is the score; when the 10 runs converged in fewer samples
on average than the reference's mean, the RCP checker scales the score up by the ratio
(mlperf_logging.rcp_checker, `_find_norm_factor`), so that is applied too. The spread
of a result is estimated by drawing 10 runs from the reference runs' convergence
(`trials` times, seeded).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import numpy as np

from scalefold.plan.config import Cluster, RunShape
from scalefold.plan.evaluation import (
    assumed_validation_lengths,
    chain_seconds,
    evaluation_seconds,
)
from scalefold.plan.profile import Profile
from scalefold.plan.rcp import (
    StepsToTarget,
    interpolated_checker_stats,
    load_reference_points,
    steps_to_target,
)
from scalefold.plan.stepmodel import StepBreakdown, choose_step, gpu_ratio
from scalefold.plan.timeline import RunFigures, RunTime, run_time

RUNS_PER_RESULT = 10
TARGET_TO_BEAT_MIN = 7.51  # NVIDIA's MLPerf HPC v3.0 OpenFold result (olympic mean)
# A fit closer than this to the usable memory is flagged: the profiled peak moves by
# tenths of a GiB between forms of the step (76.8 -> 76.5 GiB for h200 on 2026-12-05).
MEMORY_MARGIN_GIB = 1.0


@dataclass(frozen=True)
class PlanOptions:
    gpu_ratio: float | None = None  # step time on the cluster's GPU over the profile's
    dap_overlap: float = 0.0
    validation_lengths: tuple[int, ...] | None = None
    eval_speedup: float = 1.0  # evaluation this many times faster than profiled
    accumulate: bool = False  # a local batch > 1 as sequential micro-batches
    grad_sync: str = "flat"  # "bucketed": the all-reduce from inside backward
    trials: int = 2000
    seed: int = 0


@dataclass(frozen=True)
class ResultStats:
    """Time to train of single runs and of 10-run results, for one time line."""

    runs: tuple[RunTime, ...]  # one per reference run's convergence
    run_mean_s: float
    run_std_s: float
    olympic_mean_s: float  # expected score of a 10-run result
    olympic_p05_s: float
    olympic_p95_s: float
    normalised_share: float  # share of drawn results the RCP checker would scale up


def result_stats(target: StepsToTarget, fig: RunFigures,
                 options: PlanOptions = PlanOptions()) -> ResultStats:
    """Runs at each reference convergence, and the score of drawn 10-run results."""
    by_steps = {n: run_time(n, fig) for n in set(target.steps)}
    runs = tuple(by_steps[n] for n in target.steps)
    totals = np.array([r.total_s for r in runs])
    olympic, share = _olympic(target, totals, options)
    return ResultStats(runs, float(totals.mean()), float(totals.std()),
                       float(olympic.mean()), float(np.percentile(olympic, 5)),
                       float(np.percentile(olympic, 95)), share)


@dataclass(frozen=True)
class Prediction:
    cluster: Cluster
    shape: RunShape
    step: StepBreakdown
    figures: RunFigures
    eval_steady_s: float
    target: StepsToTarget
    stats: ResultStats  # single runs and 10-run results of this time line
    assumptions: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=())

    def mean_parts(self) -> dict[str, float]:
        runs = self.stats.runs
        keys = runs[0].parts().keys()
        return {k: float(np.mean([r.parts()[k] for r in runs])) for k in keys}

    def step_parts(self) -> dict[str, float]:
        s = self.step
        return {"compute": s.compute_s, "DAP communication": s.dap_comm_s,
                "gradient all-reduce": s.allreduce_s, "data-loader stall": s.loader_stall_s}


def eval_times(cluster: Cluster, shape: RunShape, step: StepBreakdown, profile: Profile,
               ratio: float, options: PlanOptions) -> tuple[float, float]:
    """(first, steady) seconds of one evaluation: on the asynchronous ranks, or
    synchronously on every training rank. The evaluation runs with the chosen preset's
    evaluation levers, so its measurement is the one of that preset where there is one."""
    ev = profile.eval_for(step.preset, asynchronous=shape.eval_ranks > 0)
    if ev is None:
        raise ValueError(f"profile {profile.path or profile.device} has no 'eval' section")
    scale = ratio / options.eval_speedup
    per_chain = chain_seconds(ev)
    ranks = shape.eval_ranks or (cluster.gpus - step.idle_gpus)
    lengths = validation_lengths(profile, options)
    steady = evaluation_seconds(lengths, ranks, lambda n: per_chain(n) * scale)
    # The first evaluation's extra (compilation, autotuning, graph capture) as measured
    # on one GPU over its chains; each rank of many does it for its own shapes only, so
    # this errs long.
    return steady + ev.first_extra_s * scale, steady


def validation_lengths(profile: Profile, options: PlanOptions) -> tuple[int, ...]:
    """--validation-lengths, else the profile's evaluated validation set, else the
    assumed distribution."""
    return (options.validation_lengths or profile.validation_lengths()
            or assumed_validation_lengths())


def predict(cluster: Cluster, shape: RunShape, profile: Profile,
            options: PlanOptions = PlanOptions(),
            target: StepsToTarget | None = None) -> Prediction:
    ratio = gpu_ratio(profile.gpu, cluster.gpu, options.gpu_ratio)
    if options.eval_speedup <= 0:
        raise ValueError(f"eval_speedup must be > 0, got {options.eval_speedup}")
    step = choose_step(cluster, shape, profile, ratio, options.dap_overlap,
                       options.accumulate, options.grad_sync)
    first, steady = eval_times(cluster, shape, step, profile, ratio, options)
    asynchronous = shape.eval_ranks > 0
    fig = RunFigures(
        step_s=step.step_s, startup_s=profile.timed_startup_s, warmup_s=profile.warmup_s,
        eval_s=(first + (0 if asynchronous else profile.boundary_s),
                steady + (0 if asynchronous else profile.boundary_s)),
        asynchronous=asynchronous, async_queue=1,
        handoff_s=profile.boundary_s if asynchronous else 0.0)
    target = target or steps_to_target(shape.global_batch,
                                       samples_to_target=shape.samples_to_target)
    stats = result_stats(target, fig, options)
    warnings = _warnings(cluster, shape, step, fig, steady)
    assumptions = _assumptions(profile, cluster, ratio, options, step, asynchronous)
    return Prediction(
        cluster=cluster, shape=shape, step=step, figures=fig, eval_steady_s=steady,
        target=target, stats=stats, assumptions=assumptions, warnings=warnings)


def _olympic(target: StepsToTarget, totals: np.ndarray, options: PlanOptions) -> tuple[np.ndarray, float]:
    """Scores of `trials` drawn 10-run results, with the RCP checker's scaling."""
    samples = np.array(target.samples)
    if len(samples) == 1:
        return np.array([totals[0]]), 0.0
    rng = np.random.default_rng(options.seed)
    pick = rng.integers(0, len(samples), size=(options.trials, RUNS_PER_RESULT))
    order = np.argsort(totals[pick], axis=1)
    t_sorted = np.take_along_axis(totals[pick], order, axis=1)[:, 1:-1]
    s_sorted = np.sort(samples[pick], axis=1)[:, 1:-1]
    score = t_sorted.mean(axis=1)
    rcp_mean, _ = interpolated_checker_stats(target.global_batch, load_reference_points())
    factor = np.maximum(1.0, rcp_mean / s_sorted.mean(axis=1))
    return score * factor, float(np.mean(factor > 1.0))


def _warnings(cluster: Cluster, shape: RunShape, step: StepBreakdown, fig: RunFigures,
              steady_eval: float) -> tuple[str, ...]:
    out = []
    if not step.fits:
        out.append(f"memory: {step.memory_gib:.1f} GiB per GPU exceeds the "
                   f"{step.memory_limit_gib:.1f} GiB usable on {cluster.name} "
                   f"(preset {step.preset}, DAP {shape.dap_size}, local batch "
                   f"{step.local_batch})")
    elif step.memory_limit_gib - step.memory_gib < MEMORY_MARGIN_GIB:
        out.append(f"memory: {step.memory_gib:.1f} GiB per GPU is within "
                   f"{step.memory_limit_gib - step.memory_gib:.1f} GiB of the "
                   f"{step.memory_limit_gib:.1f} GiB usable on {cluster.name} (preset "
                   f"{step.preset}): whether it fits rests on the profiled peak and the "
                   f"assumed reserve")
    if step.idle_gpus:
        out.append(f"{step.idle_gpus} of {cluster.gpus} GPUs idle: the global batch "
                   f"{shape.global_batch} at DAP {shape.dap_size} uses "
                   f"{step.groups * shape.dap_size} training GPUs")
    if fig.asynchronous and steady_eval > fig.cadence * fig.step_s:
        out.append(f"asynchronous evaluation falls behind: {steady_eval:.1f} s per "
                   f"evaluation on {shape.eval_ranks} ranks against "
                   f"{fig.cadence * fig.step_s:.1f} s of training per {fig.cadence} steps")
    return tuple(out)


def _assumptions(profile: Profile, cluster: Cluster, ratio: float, options: PlanOptions,
                 step: StepBreakdown, asynchronous: bool) -> tuple[str, ...]:
    out = [f"{name}: {profile.sources.get(name, '')}" for name in profile.assumed]
    if ratio != 1.0:
        out.append(f"step and evaluation times scaled by {ratio:.3f} from the profile's "
                   f"{profile.gpu} to {cluster.gpu} GPUs (scalefold.plan.stepmodel)")
    if options.validation_lengths is None:
        prof_set = profile.validation_lengths()
        if prof_set is None:
            out.append("validation chain lengths assumed (180 chains, log-normal, median "
                       "230 residues, at most 700); pass --validation-lengths")
        elif profile.eval is not None and profile.eval.lengths_assumed:
            out.append(f"validation chain lengths assumed: the profile's evaluation of "
                       f"{len(prof_set)} synthetic chains (median "
                       f"{statistics.median(prof_set):.0f}, at most {max(prof_set)} "
                       f"residues, bench eval's assumed CAMEO lengths, in its seeded "
                       f"order); pass --validation-lengths")
    ev = profile.eval_for(step.preset, asynchronous)
    if ev is not None and ev.preset and ev.preset != step.preset:
        where = " on the asynchronous evaluation ranks" if asynchronous else ""
        out.append(f"evaluation of preset {step.preset}{where} taken from the profile's "
                   f"measurement of preset {ev.preset}")
    if ev is not None and ev is not profile.eval and not ev.validation_set:
        out.append(f"evaluation of preset {step.preset}: per-chain times interpolated "
                   f"from {len(ev.lengths)} measured lengths ({ev.source})")
    if options.eval_speedup != 1.0:
        out.append(f"evaluation taken {options.eval_speedup:g}x faster than profiled")
    if options.accumulate and step.local_batch > 1:
        out.append(f"local batch {step.local_batch} run as sequential micro-batches "
                   f"(gradient accumulation, which the trainer does not implement yet)")
    if "cost model" in step.dap_source:
        out.append(f"DAP step from {step.dap_source}, at the preset's CUDA-graphed speed "
                   f"per GPU: the trainer runs DAP eagerly today, which is slower")
    if options.grad_sync == "bucketed" and step.training_ranks > 1:
        out.append("gradient all-reduce in buckets from inside backward (grad_sync="
                   "'bucketed', not measured on GPUs): only the last bucket's all-reduce "
                   "exposed; the collectives' share of the SMs and the one-graph step's "
                   "cost against the split graphs not modelled")
    if step.training_ranks > 1 and profile.multi_rank_ratio is None:
        out.append("multi-rank trainer path not measured: the one-process trainer's step "
                   "ratio is used")
    return tuple(out)
