"""Time of one evaluation of the validation set on a number of ranks.

Per-chain time. Where the profile's evaluation timed every chain (`bench eval`), a chain
of length L takes the measured time at that length: the median of the chains measured at
L, linear between measured lengths, the shortest chain's time below them (short chains
are bound by per-chain fixed costs, not arithmetic) and the longest's scaled by g(L) (below)
above them. The measured curve grows far slower than arithmetic: on an H200 with the
evaluation levers, 700 residues took 3.04 s against 0.48 s at 230 (6.3x, where g gives
13x), because short chains leave the GPU underused.

Where only whole evaluations were timed, a chain's cost is taken proportional to the
Evoformer's arithmetic at that length, g(L) = 0.28 x + 0.38 x^2 + 0.34 x^3 with
x = L / 256: the shares of one Evoformer block's forward FLOPs at crop 256 that grow with
L (column attention and MSA transition: 60.2 of 216 GFLOP), L^2 (row attention, outer
product mean, pair transition: 82.8) and L^3 (triangle multiplications and attentions:
73.2), docs/DAP.md, times a unit fitted to the measured evaluation.

Sharding. As the trainer shards (`CachedValidationLoader.indices`: chain i of the
validation set to rank i mod k, in the set's order), each rank scores its chains one
after another; the evaluation takes as long as the most loaded rank.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Callable, Sequence

from scalefold.plan.profile import EvalProfile

SHARES = (0.28, 0.38, 0.34)  # L, L^2, L^3 shares of the Evoformer's FLOPs at L = 256

# The CAMEO validation set's chain lengths are not shipped (they come from chains.csv).
# A profile whose evaluation ran the whole (synthetic) set brings its lengths; without
# one the plan assumes the same distribution as `bench eval` (scalefold.bench.eval,
# `assumed_cameo_lengths`): 180 chains, log-normal of median 230 residues and sigma 0.55,
# clipped to 30..700 (an assumption, named in the output; pass the real lengths with
# --validation-lengths). Kept equal to the bench's by tests/plan/test_model.py.
ASSUMED_CHAINS = 180
ASSUMED_MEDIAN = 230.0
ASSUMED_SIGMA = 0.55
ASSUMED_MIN, ASSUMED_MAX = 30, 700


def relative_cost(length: int) -> float:
    x = length / 256
    return SHARES[0] * x + SHARES[1] * x * x + SHARES[2] * x ** 3


def assumed_validation_lengths() -> tuple[int, ...]:
    """Deterministic quantiles of the assumed length distribution."""
    out = []
    for i in range(ASSUMED_CHAINS):
        q = (i + 0.5) / ASSUMED_CHAINS
        z = math.sqrt(2) * _erfinv(2 * q - 1)
        out.append(int(min(ASSUMED_MAX, max(ASSUMED_MIN,
                                            round(ASSUMED_MEDIAN * math.exp(ASSUMED_SIGMA * z))))))
    return tuple(sorted(out))


def _erfinv(y: float) -> float:
    # Newton's method on erf; |y| < 1 here.
    x = 0.0
    for _ in range(60):
        err = math.erf(x) - y
        x -= err / (2 / math.sqrt(math.pi) * math.exp(-x * x))
    return x


def seconds_per_unit(profile: EvalProfile) -> float:
    """Seconds of one chain of relative cost 1 (a 256-residue chain), from the profile:
    a least-squares fit to per-chain times where all are measured, else the steady
    evaluation's time over the chains' total cost (per rank)."""
    costs = [relative_cost(n) for n in profile.lengths]
    if profile.chain_seconds and all(s is not None for s in profile.chain_seconds):
        num = sum(c * float(s) for c, s in zip(costs, profile.chain_seconds))
        return num / sum(c * c for c in costs)
    return profile.steady_s * profile.ranks / sum(costs)


def chain_seconds(profile: EvalProfile) -> Callable[[int], float]:
    """Seconds of one chain by length on one GPU (module docstring): the measured
    per-chain curve where every chain was timed, else g(L) times the fitted unit."""
    if not profile.per_chain_measured:
        unit = seconds_per_unit(profile)
        return lambda n: unit * relative_cost(n)
    by_length: dict[int, list[float]] = {}
    for n, s in zip(profile.lengths, profile.chain_seconds):
        by_length.setdefault(n, []).append(float(s))
    xs = sorted(by_length)
    ys = [statistics.median(by_length[n]) for n in xs]

    def at(n: int) -> float:
        if n <= xs[0]:
            return ys[0]
        if n >= xs[-1]:
            return ys[-1] * relative_cost(n) / relative_cost(xs[-1])
        j = bisect.bisect_right(xs, n)
        x0, x1, y0, y1 = xs[j - 1], xs[j], ys[j - 1], ys[j]
        return y0 + (y1 - y0) * (n - x0) / (x1 - x0)

    return at


def evaluation_seconds(lengths: Sequence[int], ranks: int,
                       seconds: Callable[[int], float]) -> float:
    """Makespan of the chains over `ranks`: chain i to rank i mod ranks, in order."""
    if ranks < 1:
        raise ValueError(f"evaluation ranks must be >= 1, got {ranks}")
    if not lengths:
        raise ValueError("no validation chains")
    loads = [0.0] * min(ranks, len(lengths))
    for i, n in enumerate(lengths):
        loads[i % len(loads)] += seconds(n)
    return max(loads)
