"""Steps to target from the benchmark's reference convergence points (RCPs).

The RCPs are read at run time from the installed `mlperf-logging` package
(`mlperf_logging/rcp_checker/hpc_3.0.0/rcps_openfold.json`): for each reference global
batch, the samples to converge of 20 reference runs. Statistics follow the checker
(`mlperf_logging.rcp_checker.RCP_Checker`): the mean is the olympic mean of the 20 runs
(fastest and slowest dropped), the spread the standard deviation of all 20. Between two
reference batch sizes the checker interpolates the mean and the standard deviation
linearly in the batch size; here the whole distribution is interpolated the same way
(sorted run by sorted run), so its olympic mean equals the checker's interpolated mean.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import resources

import numpy as np

RULESET = "hpc_3.0.0"
BENCHMARK = "openfold"
VAL_EVERY_ITERS = 40


@dataclass(frozen=True)
class ReferencePoint:
    """One RCP record: the reference runs' samples to converge at one global batch."""

    global_batch: int
    samples: tuple[int, ...]

    @property
    def olympic_mean(self) -> float:
        s = sorted(self.samples)
        return float(np.mean(s[1:-1]))

    @property
    def stdev(self) -> float:
        return float(np.std(self.samples))


@dataclass(frozen=True)
class StepsToTarget:
    """Distribution of steps to target for one global batch (equally likely values)."""

    global_batch: int
    samples: tuple[float, ...]  # samples to converge, one per reference run (sorted)
    steps: tuple[int, ...]  # the same as training steps, on the evaluation grid
    source: str  # how it was obtained: a reference point, interpolation, or the user

    @property
    def mean_samples(self) -> float:
        return float(np.mean(self.samples))

    @property
    def olympic_mean_samples(self) -> float:
        s = sorted(self.samples)
        return float(np.mean(s[1:-1])) if len(s) > 2 else float(np.mean(s))


def rcp_path() -> str:
    """Where the installed mlperf-logging keeps the OpenFold RCPs."""
    root = resources.files("mlperf_logging") / "rcp_checker" / RULESET / f"rcps_{BENCHMARK}.json"
    return str(root)


def load_reference_points() -> tuple[ReferencePoint, ...]:
    """The OpenFold RCP records of the installed mlperf-logging, by global batch."""
    path = rcp_path()
    try:
        with open(path) as f:
            raw = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no OpenFold RCP file at {path}: is mlperf-logging (with {RULESET}) installed?"
        ) from None
    points = []
    for name, rec in raw.items():
        if rec.get("Benchmark") != BENCHMARK:
            continue
        samples = rec.get("Epochs to converge")
        if not samples:
            raise ValueError(f"RCP record {name} in {path} has no 'Epochs to converge'")
        points.append(ReferencePoint(int(rec["BS"]), tuple(int(s) for s in samples)))
    if not points:
        raise ValueError(f"no {BENCHMARK} records in {path}")
    return tuple(sorted(points, key=lambda p: p.global_batch))


def steps_on_grid(samples: float, global_batch: int, every: int = VAL_EVERY_ITERS) -> int:
    """Training steps of a run that converges after `samples`: it can only stop at an
    evaluation, every `every` steps, so the count is rounded up to that grid."""
    steps = samples / global_batch
    return int(every * math.ceil(steps / every - 1e-9))


def steps_to_target(global_batch: int, points: tuple[ReferencePoint, ...] | None = None,
                    samples_to_target: float | None = None) -> StepsToTarget:
    """Steps to target at `global_batch`: a reference point's runs, an interpolation
    between the two nearest reference points (as the RCP checker does), or, when given,
    the user's `samples_to_target` (one value). Batch sizes outside the reference range
    are refused without `samples_to_target`: no reference says how they converge."""
    if global_batch < 1:
        raise ValueError(f"global batch must be >= 1, got {global_batch}")
    if samples_to_target is not None:
        if samples_to_target <= 0:
            raise ValueError(f"samples to target must be > 0, got {samples_to_target}")
        return StepsToTarget(global_batch, (float(samples_to_target),),
                             (steps_on_grid(samples_to_target, global_batch),),
                             "given samples to target")
    points = points or load_reference_points()
    by_batch = {p.global_batch: p for p in points}
    if global_batch in by_batch:
        s = sorted(float(x) for x in by_batch[global_batch].samples)
        source = f"RCP {RULESET} {BENCHMARK} global batch {global_batch} ({len(s)} runs)"
    else:
        lower = [p for p in points if p.global_batch < global_batch]
        upper = [p for p in points if p.global_batch > global_batch]
        if not lower or not upper:
            known = ", ".join(str(p.global_batch) for p in points)
            raise ValueError(
                f"global batch {global_batch} is outside the reference convergence points "
                f"({known}); pass samples to target (--samples-to-target) to plan it"
            )
        lo, hi = lower[-1], upper[0]
        w = (global_batch - lo.global_batch) / (hi.global_batch - lo.global_batch)
        a, b = sorted(lo.samples), sorted(hi.samples)
        if len(a) != len(b):
            raise ValueError(f"RCPs at {lo.global_batch} and {hi.global_batch} hold different "
                             f"numbers of runs ({len(a)}, {len(b)}); cannot interpolate")
        s = [(1 - w) * x + w * y for x, y in zip(a, b)]
        source = (f"RCP {RULESET} {BENCHMARK} interpolated linearly in batch size between "
                  f"{lo.global_batch} and {hi.global_batch} (as the RCP checker does)")
    steps = tuple(steps_on_grid(x, global_batch) for x in s)
    return StepsToTarget(global_batch, tuple(s), steps, source)


def interpolated_checker_stats(global_batch: int,
                               points: tuple[ReferencePoint, ...] | None = None
                               ) -> tuple[float, float]:
    """The RCP checker's (mean, stdev) at `global_batch`: a reference point's olympic mean
    and standard deviation, or their linear interpolation in batch size."""
    points = points or load_reference_points()
    xs = [p.global_batch for p in points]
    if not xs[0] <= global_batch <= xs[-1]:
        raise ValueError(f"global batch {global_batch} is outside {xs[0]}..{xs[-1]}")
    mean = float(np.interp(global_batch, xs, [p.olympic_mean for p in points]))
    std = float(np.interp(global_batch, xs, [p.stdev for p in points]))
    return mean, std
