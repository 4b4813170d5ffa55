"""Data-loader stalls per step, from the time one sample takes to prepare.

Each training rank's `workers` processes prepare samples in parallel; a step needs one
sample per rank (the ranks of a DAP group prepare the same one). Sample times are taken
log-normal, fitted to a measured median and 95th percentile.

- Throughput: the workers supply `workers / mean` samples a second; a step shorter than
  `local_batch * mean / workers` waits for the difference (both loaders).
- Head of line (`InitialTrainingDataloaderPT`, in order): a sample has about
  `workers * step / local_batch` seconds between its start and its turn; one that takes
  longer stalls its rank, and the step waits for the slowest of all ranks. With G
  sample streams (data-parallel groups times local batch) the expected stall is
  E[max(0, max_i p_i - budget)] = integral over s > 0 of 1 - F(budget + s)^G.
  `InitialTrainingDataloaderPQ` lets a fast sample overtake a slow one, so only the
  throughput term remains.
"""

from __future__ import annotations

import math

Z95 = 1.6448536269514722


def lognormal_cdf(x: float, median: float, sigma: float) -> float:
    if x <= 0:
        return 0.0
    if sigma <= 0:
        return 1.0 if x >= median else 0.0
    return 0.5 * (1 + math.erf(math.log(x / median) / (sigma * math.sqrt(2))))


def loader_stall_s(step_s: float, median_s: float, p95_s: float, workers: int,
                   local_batch: int, streams: int, in_order: bool) -> float:
    """Expected seconds a step waits for data (see the module's description)."""
    if median_s <= 0 or workers < 1 or streams < 1:
        raise ValueError("sample time, workers and streams must be positive")
    sigma = max(0.0, math.log(max(p95_s, median_s) / median_s) / Z95)
    mean = median_s * math.exp(sigma ** 2 / 2)
    throughput = max(0.0, local_batch * mean / workers - step_s)
    if not in_order:
        return throughput
    budget = workers * step_s / local_batch
    top = budget + median_s * math.exp(8 * sigma) + mean
    n = 400
    ds = top / n
    area = 0.0
    for i in range(n):
        s = (i + 0.5) * ds
        area += (1 - lognormal_cdf(budget + s, median_s, sigma) ** streams) * ds
    return max(throughput, area)
