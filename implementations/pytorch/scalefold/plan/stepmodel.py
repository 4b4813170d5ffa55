"""One training step's time and memory on a cluster, from a one-GPU profile.

t_step = L * (T_c(P) + C_dap(P)) + A(W) + S_loader, with L the local batch (samples a
rank runs one after another), P the DAP size, W the training ranks:

- T_c(P) = t1 * ((1 - f) + f / P): t1 the profiled one-GPU step (uniform average over
  n = 0..3, times the trainer's measured ratio to `bench step`, times the GPU kind's
  ratio). With more than one training rank the ratio is the multi-rank trainer's
  (torchrun, flat gradient sync, CUDA graphs, measured at world size 1: the flat
  buffer's copies and the process group's work around the graphs), where measured; the
  all-reduce's own cost over W ranks is A(W) below, f = 0.8 its share in the three DAP-split stacks (docs/DAP.md). A measured
  DAP step of the same preset replaces the formula.
- C_dap(P): docs/DAP.md's communication per step, 2.5 forward passes and one backward
  of the collectives the code runs: bytes F(P) = a*2248.1 + b*5637.1 MB forward,
  Bk(P) = a*2281.7 + b*5637.1 MB backward (a = (P-1)/P, b = (P-1)/P^2), at NVLink
  bandwidth times NCCL's efficiency, plus (n+1)*644 + 645 collectives' latency; a
  share `dap_overlap` of it hidden behind compute (0: the collectives are synchronous).
- A(W): one all-reduce of the fp32 gradients (93,229,082 parameters) over all training
  ranks, ring bandwidth term 2 (W-1)/W * bytes / bandwidth plus 2 log2(W) latencies;
  NVLink inside a node, the GPU's network share across nodes; never below the measured
  two-GPU cost. With `grad_sync="bucketed"` (all-reduces of 25 MiB buckets launched
  from inside backward) only what backward cannot hide is exposed: the last bucket's
  all-reduce, or A(W) minus the backward's time (the n = 0 step less one forward, per
  GPU) if that is longer. The collectives' share of the SMs while they overlap is not
  modelled (an assumption, printed), nor is the one-graph step's cost against the split
  one (the multi-rank ratio stays the flat sync's).
- S_loader: scalefold.plan.loader.
Memory: the preset's one-GPU peak, the part DAP divides shrinking as 1/P (share
measured by `bench dap`), the activations times L (the trainer's batched forward) or
once (with gradient accumulation, `accumulate`); with synchronous evaluation, plus the
preset's evaluation peak (allocated; its graph pools reserve more), since the training
step's CUDA-graph pools stay held while a training rank evaluates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scalefold.plan.config import Cluster, RunShape
from scalefold.plan.loader import loader_stall_s
from scalefold.plan.profile import Profile
from scalefold.train.config import GRAD_BUCKET_BYTES

GRAD_SYNCS = ("flat", "bucketed")

PARAMETERS = 93_229_082
GRAD_BYTES = PARAMETERS * 4
STATE_GIB = PARAMETERS * 4 * 5 / 2 ** 30  # weights, gradients, Adam's two moments, SWA
STACK_SHARE = 0.8  # docs/DAP.md: share of the one-GPU step in the DAP-split stacks
MEAN_FORWARDS = 2.5  # n uniform on 0..3: n forwards without gradients, one with
DEFAULT_REPLICATED_MEMORY = 0.1  # used when a profile has no DAP memory pair

# H100 step time over H200 step time, measured: the `h100` preset on one H100 (2026-12-05,
# twelfth session, calls C and E: 0.5382 and 0.5391 s a step, docs/evidence/
# 2026-12-05_h100) over the same preset on the H200 (the profile's `h100` entry: call 42's
# h200 plus call 25's cost of the recomputed outer product, 0.4675 s): 1.15. The two
# share SM count and clocks and differ in HBM bandwidth (3.35 against 4.8 TB/s, 1.43x):
# the bounds are 1.0 (all compute) and 1.43 (all memory); a model of 40% arithmetic and
# 60% memory-bound kernels had given 1.26. The evaluation is scaled by the same ratio
# (not measured on an H100).
GPU_STEP_RATIOS = {("h200", "h100"): 1.15, ("h100", "h200"): 1 / 1.15}


def gpu_ratio(profiled: str, target: str, override: float | None = None) -> float:
    if override is not None:
        if override <= 0:
            raise ValueError(f"GPU ratio must be > 0, got {override}")
        return override
    if profiled == target:
        return 1.0
    if (profiled, target) not in GPU_STEP_RATIOS:
        raise ValueError(f"no ratio from a {profiled} profile to {target} GPUs; measure a "
                         f"{target} profile or pass --gpu-ratio")
    return GPU_STEP_RATIOS[(profiled, target)]


def dap_bytes_per_step(p: int) -> float:
    a = (p - 1) / p
    b = (p - 1) / p ** 2
    fwd = (a * 2248.1 + b * 5637.1) * 1e6
    bwd = (a * 2281.7 + b * 5637.1) * 1e6
    return MEAN_FORWARDS * fwd + bwd


def dap_collectives_per_step() -> float:
    return MEAN_FORWARDS * 644 + 645


@dataclass(frozen=True)
class StepBreakdown:
    preset: str
    groups: int  # data-parallel groups (samples in flight)
    local_batch: int
    idle_gpus: int
    one_gpu_s: float  # t1
    training_ranks: int  # W
    trainer_path: str  # which trainer ratio t1 carries
    compute_s: float  # L * T_c(P)
    dap_comm_s: float  # L * C_dap(P), exposed part
    allreduce_s: float
    loader_stall_s: float
    memory_gib: float
    memory_limit_gib: float
    dap_source: str

    @property
    def step_s(self) -> float:
        return self.compute_s + self.dap_comm_s + self.allreduce_s + self.loader_stall_s

    @property
    def fits(self) -> bool:
        return self.memory_gib <= self.memory_limit_gib


def allreduce_s(cluster: Cluster, ranks: int, floor_s: float,
                nbytes: float = GRAD_BYTES) -> float:
    if ranks <= 1:
        return 0.0
    if ranks <= cluster.gpus_per_node:
        bw, lat = cluster.intra_bw_gb_s, cluster.intra_latency_us
    else:
        bw = min(cluster.intra_bw_gb_s, cluster.inter_bw_gb_s)
        lat = cluster.inter_latency_us
    t = 2 * (ranks - 1) / ranks * nbytes / (bw * 1e9 * cluster.nccl_efficiency)
    t += 2 * math.ceil(math.log2(ranks)) * lat * 1e-6
    return max(t, floor_s)


def exposed_allreduce_s(cluster: Cluster, ranks: int, floor_s: float, grad_sync: str,
                        backward_s: float) -> float:
    """The gradient all-reduce's time on the step's critical path (module docstring)."""
    if grad_sync not in GRAD_SYNCS:
        raise ValueError(f"grad_sync must be one of {GRAD_SYNCS}, got {grad_sync!r}")
    whole = allreduce_s(cluster, ranks, floor_s)
    if grad_sync == "flat" or ranks <= 1:
        return whole
    last = allreduce_s(cluster, ranks, 0.0, min(GRAD_BUCKET_BYTES, GRAD_BYTES))
    return max(last, whole - backward_s)


def dap_comm_s(cluster: Cluster, p: int, overlap: float) -> float:
    if p == 1:
        return 0.0
    bw = cluster.intra_bw_gb_s * 1e9 * cluster.nccl_efficiency
    t = dap_bytes_per_step(p) / bw + dap_collectives_per_step() * cluster.intra_latency_us * 1e-6
    return (1 - overlap) * t


def step_breakdown(cluster: Cluster, shape: RunShape, profile: Profile, preset: str,
                   ratio: float, dap_overlap: float = 0.0,
                   accumulate: bool = False, grad_sync: str = "flat") -> StepBreakdown:
    if not 0 <= dap_overlap <= 1:
        raise ValueError(f"dap_overlap must be in [0, 1], got {dap_overlap}")
    groups, local, idle = shape.layout(cluster)
    prof = profile.step(preset)
    p = shape.dap_size
    w = groups * p
    if w > 1 and profile.multi_rank_ratio is not None:
        trainer_ratio, path = profile.multi_rank_ratio, "multi-rank trainer (flat sync)"
    else:
        trainer_ratio, path = profile.trainer_ratio, "one-process trainer"
    t1 = prof.avg_s * trainer_ratio * ratio
    if preset == profile.dap_variant and p in profile.dap_sizes and 1 in profile.dap_sizes:
        measured = profile.dap_step_s[profile.dap_sizes.index(p)]
        base = profile.dap_step_s[profile.dap_sizes.index(1)]
        compute, comm = t1 * measured / base, 0.0
        dap_source = f"bench dap measurement of {preset} at DAP {p}"
    else:
        compute = t1 * ((1 - STACK_SHARE) + STACK_SHARE / p)
        comm = dap_comm_s(cluster, p, dap_overlap)
        dap_source = ("none (DAP 1)" if p == 1 else
                      "docs/DAP.md cost model (no bench dap measurement of this preset)")
    # Backward of the last sample per GPU: the n = 0 step less one gradient-free forward.
    n0, n1 = prof.per_n_s[0], prof.per_n_s[1]
    backward = (n0 - (n1 - n0)) * trainer_ratio * ratio * ((1 - STACK_SHARE) + STACK_SHARE / p)
    ar = exposed_allreduce_s(cluster, w, profile.dp_overhead_s, grad_sync, backward)
    step_wo_loader = local * (compute + comm) + ar
    stall = 0.0
    if profile.prep_median_s is not None:
        stall = loader_stall_s(step_wo_loader, profile.prep_median_s,
                               profile.prep_p95_s or profile.prep_median_s,
                               shape.workers_per_gpu, local, groups * local,
                               in_order=shape.loader.endswith("PT"))
    share = profile.dap_replicated_memory_share
    share = DEFAULT_REPLICATED_MEMORY if share is None else share
    activations = max(0.0, prof.peak_mem_gib - STATE_GIB)
    # The trainer runs a local batch as one batched forward; accumulation would hold one
    # sample's activations at a time.
    one = STATE_GIB + activations * (1 if accumulate else local)
    memory = one * (share + (1 - share) / p)
    ev = profile.eval_for(preset)
    if shape.eval_ranks == 0 and ev is not None and ev.peak_mem_gib:
        memory += ev.peak_mem_gib
    return StepBreakdown(
        preset=preset, groups=groups, local_batch=local, idle_gpus=idle, one_gpu_s=t1,
        training_ranks=w, trainer_path=path,
        compute_s=local * compute, dap_comm_s=local * comm, allreduce_s=ar,
        loader_stall_s=stall, memory_gib=memory,
        memory_limit_gib=cluster.gpu_memory_gib - cluster.memory_reserve_gib,
        dap_source=dap_source)


def choose_step(cluster: Cluster, shape: RunShape, profile: Profile, ratio: float,
                dap_overlap: float = 0.0, accumulate: bool = False,
                grad_sync: str = "flat") -> StepBreakdown:
    """The given preset, or the fastest profiled preset that fits the GPU's memory (the
    smallest one when none fits; the plan then warns)."""
    presets = [shape.preset] if shape.preset else sorted(profile.steps)
    options = [step_breakdown(cluster, shape, profile, pr, ratio, dap_overlap, accumulate,
                              grad_sync)
               for pr in presets]
    fitting = [o for o in options if o.fits]
    if fitting:
        return min(fitting, key=lambda o: o.step_s)
    return min(options, key=lambda o: o.memory_gib)
