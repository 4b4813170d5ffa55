"""Time of one evaluation of the validation set on a number of ranks.

Per-chain cost at length L is taken proportional to the Evoformer's arithmetic at that
length, g(L) = 0.28 x + 0.38 x^2 + 0.34 x^3 with x = L / 256: the shares of one
Evoformer block's forward FLOPs at crop 256 that grow with L (column attention and MSA
transition: 60.2 of 216 GFLOP), L^2 (row attention, outer product mean, pair transition:
82.8) and L^3 (triangle multiplications and attentions: 73.2), docs/DAP.md. The scale
comes from a measured evaluation (`EvalProfile`). Chains go to ranks longest first, each
to the least loaded rank; the evaluation takes as long as the most loaded rank.
"""

from __future__ import annotations

import heapq
import math

from scalefold.plan.profile import EvalProfile

SHARES = (0.28, 0.38, 0.34)  # L, L^2, L^3 shares of the Evoformer's FLOPs at L = 256

# The CAMEO validation set's chain lengths are not shipped (they come from chains.csv);
# without them the plan assumes 180 chains whose lengths follow a log-normal of median
# 230 residues and sigma 0.45, cut to the set's 30..700 (an assumption, named in the
# output; pass the real lengths with --validation-lengths).
ASSUMED_CHAINS = 180
ASSUMED_MEDIAN = 230.0
ASSUMED_SIGMA = 0.45


def relative_cost(length: int) -> float:
    x = length / 256
    return SHARES[0] * x + SHARES[1] * x * x + SHARES[2] * x ** 3


def assumed_validation_lengths() -> tuple[int, ...]:
    """Deterministic quantiles of the assumed length distribution."""
    out = []
    for i in range(ASSUMED_CHAINS):
        q = (i + 0.5) / ASSUMED_CHAINS
        z = math.sqrt(2) * _erfinv(2 * q - 1)
        out.append(int(min(700, max(30, round(ASSUMED_MEDIAN * math.exp(ASSUMED_SIGMA * z))))))
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


def evaluation_seconds(lengths: tuple[int, ...], ranks: int, unit_s: float) -> float:
    """Makespan of the chains over `ranks`, longest first to the least loaded."""
    if ranks < 1:
        raise ValueError(f"evaluation ranks must be >= 1, got {ranks}")
    if not lengths:
        raise ValueError("no validation chains")
    loads = [0.0] * min(ranks, len(lengths))
    heapq.heapify(loads)
    for n in sorted(lengths, reverse=True):
        least = heapq.heappop(loads)
        heapq.heappush(loads, least + unit_s * relative_cost(n))
    return max(loads)
