"""Second scenario: AlphaFold2's initial training from scratch (`--lr-schedule alphafold`).

Length of the schedule: AlphaFold2's supplement (Jumper et al. 2021, Supplementary
Information section 1.11 and Table 4): initial training at global batch 128 for about
10 million samples, i.e. 10e6 / 128 = 78,125 steps; it took about 7 days on 128 TPU v3
cores. The learning-rate schedule is the package's `LRSchedule.alphafold_pretraining`
(warm-up from 1e-6 to 1e-3 over 1000 steps, 5e-5 after 60,000 steps: the OpenFold
reference's defaults); it changes no step's cost. ScaleFold (NVIDIA, 2024) reports this
initial training in about 10 hours on 2080 H100s. No evaluation or target: the time is
the steps' time plus the start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scalefold.plan.config import Cluster, RunShape
from scalefold.plan.model import PlanOptions
from scalefold.plan.profile import Profile
from scalefold.plan.stepmodel import StepBreakdown, choose_step, gpu_ratio
from scalefold.train.schedule import LRSchedule

AF2_SAMPLES = 10_000_000
AF2_GLOBAL_BATCH = 128
AF2_DAYS = 7.0
SCALEFOLD_HOURS = 10.0
SCALEFOLD_GPUS = 2080


@dataclass(frozen=True)
class PretrainPrediction:
    cluster: Cluster
    shape: RunShape
    step: StepBreakdown
    steps: int
    hours: float
    schedule: LRSchedule
    accumulated: bool  # a local batch > 1 assumed run as sequential micro-batches


def pretrain_steps(samples: int = AF2_SAMPLES, global_batch: int = AF2_GLOBAL_BATCH) -> int:
    return math.ceil(samples / global_batch)


def predict_pretraining(cluster: Cluster, shape: RunShape, profile: Profile,
                        options: PlanOptions | None = None,
                        samples: int = AF2_SAMPLES) -> PretrainPrediction:
    options = options or PlanOptions()
    ratio = gpu_ratio(profile.gpu, cluster.gpu, options.gpu_ratio)
    step = choose_step(cluster, shape, profile, ratio, options.dap_overlap, options.accumulate)
    n = pretrain_steps(samples, shape.global_batch)
    hours = (profile.timed_startup_s + n * step.step_s) / 3600
    return PretrainPrediction(cluster, shape, step, n, hours, LRSchedule.alphafold_pretraining(),
                              options.accumulate and step.local_batch > 1)
