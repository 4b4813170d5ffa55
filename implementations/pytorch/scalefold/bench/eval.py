"""`scalefold bench eval`: one full evaluation pass, timed, as the trainer evaluates.

The benchmark evaluates the SWA weights on all 180 CAMEO validation chains (full length,
at most 700 residues, 4 recycling iterations, no crop) every 40 training steps. This bench
builds the evaluation model exactly as the trainer does (`build_step`, then
`Evaluator.from_built`: the same precision, speed-ups and evaluation levers) and scores
synthetic chains at the validation set's lengths through the trainer's own `Evaluator`.

Lengths. The repository lists the CAMEO targets by id only (data/cameo_targets.json); their
lengths are not public here. The default is an assumption, `assumed_cameo_lengths`: 180
lengths at the quantiles of a log-normal distribution with median 230 residues and
sigma 0.55, clipped to [30, 700] (the benchmark's length cap): min 50, median 230,
max 700, mean 264, 4 chains at 700. They are put in a seeded order (the validation set is
ordered by submission date, not length). `--lengths` replaces them.

Chains. One synthetic chain (`scalefold.utils.synthetic`) at the longest length, with the
evaluation's MSA sizes (124 cluster rows, 1024 extra rows, 4 templates, zero-padded as the
eval loader pads) and 4 recycling slices; every chain is a contiguous copy of a prefix of
it, held in host memory as the trainer's validation cache holds its chains (about 190 kB
per residue: ~9 GB at the default lengths). Each chain's features go to the device as
the trainer's do, inside the timed region.

Passes. The first pass includes first-time work (Triton compilation and autotuning,
CUDA graph capture) unless `eval_warm_up` did it first on synthetic chains of every
length bucket, as the trainer does before run_start (`warm_up_seconds`); later passes
are the steady state. Per-chain times are device time between CUDA events on the chain's
stream (perf_counter on a CPU); with `eval_concurrent_chains` above 1 the chains' spans
overlap and sum to more than the pass. A pass's time is its wall time to the last score
on the host.

Cadence. Asynchronous evaluation ranks keep up when one evaluation fits in the time of
`cadence` training steps (`cadence * step_time`). The chains are split over k ranks as the
trainer splits them (chain i to rank i mod k); with per-chain times scaled to the pass's
wall time, `evaluation_gpus_for_cadence` is the smallest k whose busiest rank finishes in
time (null if one chain alone is longer). Synchronous evaluation instead adds
`eval_seconds` to every `cadence` steps: `sync_overhead_fraction`.

Memory. `--beside-training` captures the training step's graphs and runs one step of
each recycling count before the evaluation, so that the evaluation meets the memory a
training rank holds (synchronous evaluation); `--gpu-memory-gib G` caps the process's
allocator at G GiB, so that a larger GPU answers whether a preset fits a smaller one
(74.5 GiB: an 80 GB H100). An evaluation that does not fit fails with the allocator's
out-of-memory error (beside other variants: recorded as that variant's error).

Rank. By default the evaluation is a training rank's (synchronous evaluation), where a
preset with `eval_plain_beside_training` (`h100`) evaluates without its evaluation levers;
`--async-rank` builds it as a rank that only evaluates (`--num-async-eval-ranks`), which
keeps them.

JSON (`--json PATH`; read by `scalefold plan`):
    {
      "device": str,                  # e.g. "NVIDIA H200" or "cpu"
      "torch": str,                   # torch.__version__
      "preset": str,                  # model preset
      "precision": str,               # fp32 | tf32 | bf16
      "speed": {field: value, ...},   # the SpeedConfig the evaluation ran with (the
                                      # rank's: SpeedConfig.for_evaluation)
      "async_rank": bool,             # --async-rank: evaluated as a rank that only
                                      # evaluates
      "lengths_source": str,          # "assumed" or "given"
      "chains": [{"length": int, "seconds": float}, ...],  # steady pass, run order
      "eval_seconds": float,          # steady-state pass (the fastest after the first)
      "eval_seconds_first": float,    # the first pass, first-time work included
      "host_queue_seconds": [float],  # steady pass: host time queueing each chain (a
                                      # group's shared by its chains)
      "host_late_chains": int,        # ... forwards queued after the one before had run
      "forwards": int,                # ... forwards run (fewer than chains when grouped)
      "beside_training": {...},       # --beside-training: "steps", and the training
                                      # memory left resident: "allocated_gib",
                                      # "reserved_gib", "peak_gib" ({} otherwise)
      "gpu_memory_gib": float | null, # --gpu-memory-gib: the cap the run fitted under
      "host_parts_seconds": {str: float},  # ... median host s a forward by part: "copies"
                                      # (features to the device), "forward" (graph replay
                                      # or eager forward), "other" (the rest: the score)
      "forward_device_seconds": float,  # steady pass: GPU time between events around
                                      # each chain's forward (CUDA; 0.0 on a CPU); the
                                      # pass's time less this is outside the forwards:
                                      # copies, padding, scoring, and the GPU idle
      "model_tflop": float,           # the pass's model FLOPs (matmul-class ops of the
                                      # eager network, FlopCounterMode) at the padded
                                      # lengths, in TFLOP (iteration_flops_polynomial)
      "model_tflop_own_lengths": float,  # ... at the chains' own lengths
      "warm_up_seconds": float,       # eval_warm_up's initialisation work (0.0: off)
      "warm_up_shapes": [[int, float]],  # per warmed shape, in order: padded length,
                                      # seconds (the first carries the compiles)
      "peak_memory_gib": float,       # max allocated over all passes (0.0 on a CPU)
      "peak_reserved_gib": float,     # max reserved (graph pools included)
      "memory_before_gib": float,     # allocated before the first pass (model state)
      "step_time_s": float,           # the training step time assumed for the cadence
      "cadence_steps": int,           # evaluate every this many steps
      "evaluation_gpus_for_cadence": int | null,
      "sync_overhead_fraction": float # eval_seconds / (cadence_steps * step_time_s)
    }

`--check-lddt`: the mini dataset's validation chains evaluated through two trainers
(`Trainer.evaluate`, the run's own path), once in fp32 with no speed-ups and once with
the given precision and speed-ups, from the same weights; prints both mean lDDT-Cα values
and their difference, and fails (exit 1) above `--tolerance`. Below fp32 a third run,
`plain`, takes the same precision without speed-ups: lower precision moves the mean by
itself (bf16 in plain PyTorch moved trained weights' 4-chain mean 1.15e-3 on an H100), so
where `plain` is itself beyond the tolerance from fp32 the fast path passes within the
tolerance of `plain` (its kernels add no more than that to the precision's own rounding);
`lddt_verdict` is the rule. A freshly initialised
AlphaFold has its output projections at zero (every atom at the origin, one lDDT for any
precision), so without `--checkpoint` every all-zero weight matrix is re-drawn at random
(seeded) first: a weak check, random structures score near 0.1 whatever the precision.
With `--checkpoint` (a trainer checkpoint: its SWA weights; or the MLPerf initial
checkpoint) it runs on trained weights, the check that means something.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import torch

from scalefold.data.selection import ValidationSetConfig
from scalefold.train.config import SpeedConfig, TrainConfig
from scalefold.train.evaluate import (
    Evaluator,
    bucket_length,
    chain_length,
    finite_scores,
    synthetic_chains,
)

CAMEO_NUM_CHAINS = 180
MAX_LENGTH = ValidationSetConfig().max_sequence_length  # the validation length cap
# The assumed length distribution (module docstring).
ASSUMED_MEDIAN, ASSUMED_SIGMA, ASSUMED_MIN = 230, 0.55, 30


def assumed_cameo_lengths(num_chains: int = CAMEO_NUM_CHAINS, seed: int = 0) -> list[int]:
    """`num_chains` lengths at the log-normal quantiles of the module docstring, clipped
    to [ASSUMED_MIN, MAX_LENGTH], in a seeded order."""
    if num_chains < 1:
        raise ValueError(f"num_chains must be positive, got {num_chains}")
    normal = NormalDist()
    lengths = [
        min(MAX_LENGTH, max(ASSUMED_MIN, round(
            ASSUMED_MEDIAN * math.exp(ASSUMED_SIGMA * normal.inv_cdf((i + 0.5) / num_chains))
        )))
        for i in range(num_chains)
    ]
    order = torch.randperm(num_chains, generator=torch.Generator().manual_seed(seed))
    return [lengths[i] for i in order.tolist()]


@dataclass(frozen=True)
class EvalBenchConfig:
    preset: str = "mlperf"
    device: str = "cuda"
    precision: str = "bf16"
    speed: SpeedConfig = dataclasses.field(default_factory=SpeedConfig)
    lengths: tuple[int, ...] | None = None  # None: assumed_cameo_lengths(num_chains)
    num_chains: int = CAMEO_NUM_CHAINS
    passes: int = 2  # the first includes first-time work
    step_time_s: float = 0.45
    cadence_steps: int = 40
    seed: int = 0
    # the evaluation's feature sizes (the benchmark's by default)
    max_msa_clusters: int = 124
    max_extra_msa: int = 1024
    max_templates: int = 4
    num_recycling_iters: int = 3
    # eval_warm_up: every length bucket up to this many residues (the trainer's: the
    # validation set's maximum length)
    warm_up_max_length: int = MAX_LENGTH
    # after the passes: a kernel profile of one chain of this length (None: none)
    profile_length: int | None = None
    # The training step first (graphs captured for every recycling count, one step of
    # each at the preset's crop): the evaluation then runs beside what a training rank
    # holds, as a synchronous evaluation does.
    beside_training: bool = False
    # Evaluate as a rank that only evaluates (asynchronous evaluation), not one that also
    # trains: `SpeedConfig.eval_plain_beside_training` then keeps the evaluation levers.
    async_rank: bool = False
    # Cap this process's GPU memory (GiB), e.g. 74.5 (80 GB) to emulate an H100 on an
    # H200: whether a preset's training and evaluation fit a smaller GPU.
    gpu_memory_gib: float | None = None

    def __post_init__(self) -> None:
        if self.passes < 1:
            raise ValueError(f"passes must be >= 1, got {self.passes}")
        if self.step_time_s <= 0 or self.cadence_steps <= 0:
            raise ValueError("step_time_s and cadence_steps must be positive")
        if self.lengths is not None and (not self.lengths or min(self.lengths) < 1):
            raise ValueError(f"lengths must be positive residue counts, got {self.lengths}")
        if self.gpu_memory_gib is not None and self.gpu_memory_gib <= 0:
            raise ValueError(f"gpu_memory_gib must be positive, got {self.gpu_memory_gib}")
        if self.profile_length is not None and self.profile_length < 1:
            raise ValueError(f"profile_length must be positive, got {self.profile_length}")
        if self.async_rank and self.beside_training:
            raise ValueError("async_rank and beside_training exclude each other: a rank "
                             "that only evaluates holds no training step")

    def train_config(self) -> TrainConfig:
        """The run whose evaluation this times (no data is read)."""
        return TrainConfig(
            data_dir=Path("."), output_dir=Path("."), preset=self.preset,
            precision=self.precision, speed=self.speed, seed=self.seed,
            max_msa_clusters=self.max_msa_clusters, max_extra_msa=self.max_extra_msa,
            max_templates=self.max_templates, num_recycling_iters=self.num_recycling_iters,
        )

    def chain_lengths(self) -> list[int]:
        if self.lengths is not None:
            return list(self.lengths)
        return assumed_cameo_lengths(self.num_chains, self.seed)


def synthetic_eval_chains(cfg: EvalBenchConfig, lengths: list[int]) -> list[dict]:
    """One host-memory feature batch [1, ..., R] per length, at the bench's MSA sizes."""
    return synthetic_chains(lengths, cfg.max_msa_clusters, cfg.max_extra_msa,
                            cfg.max_templates, cfg.num_recycling_iters + 1, seed=cfg.seed)


def evaluation_gpus(per_chain_s: list[float], window_s: float) -> int | None:
    """The fewest ranks, each scoring chains i::k, whose busiest finishes in `window_s`;
    None if a single chain takes longer."""
    if not per_chain_s:
        return 1
    if max(per_chain_s) > window_s:
        return None
    for k in range(1, len(per_chain_s) + 1):
        if max(sum(per_chain_s[r::k]) for r in range(k)) <= window_s:
            return k
    return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class PassTiming:
    wall_s: float
    chain_s: list[float]  # device time per chain (CUDA events; host time on a CPU)
    scores: list[float]  # lDDT-Cα per chain
    # Host time queueing each chain (features to the device, replay or forward, score).
    queue_s: list[float]
    # Forwards whose queueing ended after the GPU had finished the forward before (CUDA
    # only; 0 on a CPU). With graphs nearly every one: the graph's launch returns only
    # when the GPU has room for it. Whether the GPU then idles: `forward_device_s`.
    host_late: int
    host_parts_s: dict[str, float]  # median host seconds a forward by part (`HostParts`)
    forward_device_s: float = 0.0  # GPU seconds inside the forwards (`HostParts`, CUDA)
    forwards: int = 0  # forwards run: chains, less one a chain stacked into a group


class HostParts:
    """Host seconds of each chain's queueing spent in the evaluator's input copies and in
    its forward (the graph replay, or the eager forward): the two calls are wrapped on
    the instance (the evaluator's code is unchanged). A part that waits for the GPU shows
    here as about the chain's device time: a graph launch returns only when the GPU has
    room for it, about when the chain before has run. On a GPU, events around each
    forward also give the GPU's time inside the forwards (`forward_device_seconds`), so
    that the rest of a pass (copies, padding, scoring, idle) is measured, not inferred."""

    def __init__(self, evaluator: Evaluator) -> None:
        self._current: dict[str, float] = {}
        self.per_chain: list[dict[str, float]] = []
        self._events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        self._cuda = evaluator.device.type == "cuda"
        forward = "_replay" if evaluator.options.cuda_graphs else "_forward"
        for part, attr in (("copies", "_copies"), ("forward", forward)):
            setattr(evaluator, attr, self._timed(part, getattr(evaluator, attr)))

    def _timed(self, part: str, fn):
        def timed(*args, **kwargs):
            events = None
            if part == "forward" and self._cuda:
                events = (torch.cuda.Event(enable_timing=True),
                          torch.cuda.Event(enable_timing=True))
                events[0].record()
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._current[part] = self._current.get(part, 0.0) + time.perf_counter() - t0
                if events is not None:
                    events[1].record()
                    self._events.append(events)
        return timed

    def clear(self) -> None:
        self.per_chain.clear()
        self._events.clear()

    def forward_device_seconds(self) -> float:
        """GPU seconds inside the forwards since `clear` (after the GPU has run them)."""
        return sum(a.elapsed_time(b) for a, b in self._events) / 1e3

    def end_chain(self, queue_s: float) -> None:
        parts = self._current
        parts["other"] = max(0.0, queue_s - sum(parts.values()))
        self.per_chain.append(parts)
        self._current = {}

    def medians(self) -> dict[str, float]:
        names = ("copies", "forward", "other")
        return {n: statistics.median(c.get(n, 0.0) for c in self.per_chain)
                for n in names} if self.per_chain else {}


def time_pass(evaluator: Evaluator, chains: list[dict],
              parts: HostParts | None = None) -> PassTiming:
    """One evaluation pass, and whether the host kept ahead of the GPU."""
    device = evaluator.device
    lanes = evaluator.options.lanes
    if parts is not None:
        parts.clear()
    _sync(device)
    t0 = time.perf_counter()
    scores, marks, queue, late, members = [], [], [], 0, []
    # the forwards the trainer's evaluation runs (`Evaluator.groups`)
    for group, feats in evaluator.groups(enumerate(chains)):
        members.append(group)
        q0 = time.perf_counter()
        if device.type == "cuda":
            # on the chain's lane: with several lanes the chains' spans overlap
            events = (torch.cuda.Event(enable_timing=True),
                      torch.cuda.Event(enable_timing=True))
            scores.append(evaluator.queue_score(feats, events))
            # The previous chain's end already passed on the GPU when this one was queued
            # (one lane: with several, a lane's thread records its events later).
            late += lanes == 1 and bool(marks) and marks[-1][1].query()
            marks.append(events)
        else:
            scores.append(evaluator.queue_score(feats))
            marks.append(time.perf_counter() - q0)
        queue.append(time.perf_counter() - q0)
        if parts is not None:
            parts.end_chain(queue[-1])
    evaluator.join()
    # the pass ends when the host has the scores
    flat = torch.cat(scores).cpu().tolist()
    wall = time.perf_counter() - t0
    if device.type == "cuda":
        per_forward = [s.elapsed_time(e) / 1e3 for s, e in marks]
    else:
        per_forward = list(marks)
    # Back to the chains' order; a group's device and host time shared evenly by its
    # chains (`eval_chains_per_forward`: a chain's own time is not observable).
    values, per_chain, queue_chain = [0.0] * len(chains), [0.0] * len(chains), [0.0] * len(chains)
    at = 0
    for group, fwd_s, q_s in zip(members, per_forward, queue, strict=True):
        for index in group:
            values[index] = flat[at]
            per_chain[index] = fwd_s / len(group)
            queue_chain[index] = q_s / len(group)
            at += 1
    # a pass whose forwards went non-finite timed a broken path: not a result
    finite_scores(values, [f"chain {i} ({chain_length(f)} residues)"
                           for i, f in enumerate(chains)])
    return PassTiming(wall, per_chain, values, queue_chain, int(late),
                      parts.medians() if parts is not None else {},
                      parts.forward_device_seconds() if parts is not None else 0.0,
                      len(members))


def warm_up_breakdown(shape_s: list[tuple[int, float]]) -> str:
    """`; first (L) X s, the other N: median Y s, longest (L) Z s` for the warm-up line:
    what the first shape's compiles cost beside each shape's forward and capture."""
    if not shape_s:
        return ""
    (first_len, first_s), rest = shape_s[0], shape_s[1:]
    text = f"; first ({first_len}) {first_s:.1f} s"
    if rest:
        med = statistics.median(s for _, s in rest)
        long_len, long_s = max(rest)
        text += f", the other {len(rest)}: median {med:.1f} s, longest ({long_len}) {long_s:.1f} s"
    return text


def profile_chain(built, cfg: EvalBenchConfig, device: torch.device) -> str:
    """Kernel families and the largest kernels of one evaluation of a chain of
    `cfg.profile_length` residues (padded as the buckets pad it), without the evaluation's
    CUDA graphs: inside a graph the profiler sees only the graph's launch."""
    from torch.profiler import ProfilerActivity, profile

    from scalefold.bench.by_module import (
        format_module_breakdown,
        module_breakdown,
        module_ranges,
    )
    from scalefold.bench.roofline import card_roofline, format_gemm_rows, gemm_rows
    from scalefold.bench.step import (
        _device_kernels,
        family_breakdown,
        format_breakdown,
        top_kernels,
    )

    speed = dataclasses.replace(built.eval_speed, eval_cuda_graphs=False, eval_warm_up=False)
    evaluator = Evaluator.from_built(built, device, speed)
    feats = synthetic_eval_chains(cfg, [cfg.profile_length])[0]
    evaluator.score(feats)  # first-time work (autotuning) outside the profile
    _sync(device)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts, record_shapes=True) as prof, module_ranges(evaluator.model):
        evaluator.score(feats)
        _sync(device)
    kernels = _device_kernels(prof)
    gemms = format_gemm_rows(gemm_rows(prof, device.type == "cuda"), card_roofline(device))
    flops = chain_module_flops(built.model_config, feats, evaluator.options.bucket)
    kernel_ms = sum(k[1] for k in kernels)
    by_module = format_module_breakdown(module_breakdown(prof), kernel_ms,
                                        sum(k[2] for k in kernels), flops)
    total = sum(flops.values())
    return (f"one evaluation of a {cfg.profile_length}-residue chain "
            f"({cfg.num_recycling_iters + 1} iterations, without graphs, padded to "
            f"{bucket_length(cfg.profile_length, evaluator.options.bucket)}): "
            f"{total / 1e12:.2f} TFLOP in {kernel_ms:.1f} ms of kernels"
            + (f" ({total / 1e9 / kernel_ms:.1f} TFLOP/s)" if kernel_ms > 0 else "")
            + ", device kernels:\n"
            + format_breakdown(family_breakdown(kernels)) + "\n" + top_kernels(kernels)
            + "\nby module:\n" + by_module
            + "\nmatrix products by shape (time of their kernels against each one's floor):\n"
            + gemms)


def chain_module_flops(model_config, feats: dict, bucket: int) -> dict[str, int]:
    """Model FLOPs by module (`module_flops`) of one chain's evaluation forward at its
    padded length, counted on the eager model on the meta device."""
    from scalefold.bench.by_module import module_flops
    from scalefold.model.alphafold import AlphaFold
    from scalefold.train.evaluate import model_inputs, pad_inputs

    inputs = model_inputs(feats)
    inputs = pad_inputs(inputs, bucket_length(int(inputs["aatype"].shape[1]), bucket))
    inputs = {k: v.to("meta") for k, v in inputs.items()}
    with torch.device("meta"):
        model = AlphaFold(model_config).eval()

    def run():
        with torch.no_grad():
            model(inputs)

    return module_flops(model, run)


def cap_gpu_memory(device: torch.device, gib: float) -> float:
    """Limit this process's caching allocator on `device` to `gib` GiB (a fraction of the
    GPU's memory); returns the fraction."""
    if device.type != "cuda":
        raise ValueError("gpu_memory_gib needs a CUDA device")
    total = torch.cuda.get_device_properties(device).total_memory
    fraction = min(1.0, gib * 2**30 / total)
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    return fraction


def train_beside(built, cfg: EvalBenchConfig, device: torch.device) -> dict:
    """What a training rank holds while it evaluates: the step's graphs captured for every
    recycling count (as the trainer prepares them) and one step of each run, at the
    preset's training shapes. Returns the memory it leaves resident."""
    from scalefold.bench.step import PRESET_SHAPES, _slice
    from scalefold.utils.synthetic import synthetic_batch

    shapes = PRESET_SHAPES[cfg.preset]
    batch = synthetic_batch(built.model_config, shapes.n_res, shapes.n_clust, shapes.n_extra,
                            shapes.n_templ, num_iterations=cfg.num_recycling_iters + 1,
                            seed=cfg.seed, device=device)
    use_clamped = torch.ones(1, device=device)
    examples = [(_slice(batch, n), use_clamped) for n in range(cfg.num_recycling_iters + 1)]
    if built.graphed is not None:
        built.graphed.capture(examples)
        losses = [built.graphed(b, u).loss for b, u in examples]
    else:
        losses = [built.step(b, u).loss for b, u in examples]
    if not all(torch.isfinite(loss).item() for loss in losses):
        raise RuntimeError("the training steps run before the evaluation gave a non-finite "
                           "loss")
    cuda = device.type == "cuda"
    _sync(device)
    return {"steps": len(losses),
            "allocated_gib": torch.cuda.memory_allocated(device) / 2**30 if cuda else 0.0,
            "reserved_gib": torch.cuda.memory_reserved(device) / 2**30 if cuda else 0.0,
            "peak_gib": torch.cuda.max_memory_allocated(device) / 2**30 if cuda else 0.0}


def run_bench(cfg: EvalBenchConfig, log=print) -> dict:
    from scalefold.train.build import build_step
    from scalefold.train.topology import Topology

    device = torch.device(cfg.device)
    lengths = cfg.chain_lengths()
    log(f"bench eval: {len(lengths)} chains, lengths min {min(lengths)} median "
        f"{statistics.median(lengths):g} max {max(lengths)} "
        f"({'given' if cfg.lengths is not None else 'assumed'}), preset {cfg.preset}, "
        f"{cfg.precision}, device {device}")
    if cfg.gpu_memory_gib is not None:
        fraction = cap_gpu_memory(device, cfg.gpu_memory_gib)
        log(f"  GPU memory capped at {cfg.gpu_memory_gib:g} GiB ({100 * fraction:.1f}%)")
    chains = synthetic_eval_chains(cfg, lengths)
    tcfg = cfg.train_config()
    # One rank that trains and evaluates, or (async_rank) the evaluation rank of two.
    topo = (Topology(rank=1, world_size=2, num_eval_ranks=1) if cfg.async_rank
            else Topology(rank=0, world_size=1, num_eval_ranks=0))
    built = build_step(tcfg, device, topo)
    evaluator = Evaluator.from_built(built, device)
    cuda = device.type == "cuda"
    training = {}
    if cfg.beside_training:
        training = train_beside(built, cfg, device)
        log(f"  training beside: {training['steps']} steps, {training['allocated_gib']:.1f} "
            f"GiB allocated and {training['reserved_gib']:.1f} GiB reserved after them "
            f"(peak {training['peak_gib']:.1f} GiB)")
    built.swa.copy_to(built.eval_model)  # what `Trainer.evaluate` does first
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device) / 2**30 if cuda else 0.0
    warm_up_s = 0.0
    shape_s: list[tuple[int, float]] = []
    if built.eval_speed.eval_warm_up:  # what the trainer does before run_start
        t0 = time.perf_counter()
        shapes = evaluator.warm_up_buckets(
            max(cfg.warm_up_max_length, max(lengths)),
            cfg.max_msa_clusters, cfg.max_extra_msa, cfg.max_templates,
            cfg.num_recycling_iters + 1, timings=shape_s)
        warm_up_s = time.perf_counter() - t0
        log(f"  warm-up: {warm_up_s:.2f} s ({shapes} shapes{warm_up_breakdown(shape_s)})")
    passes = []
    # The host parts time the caller's thread; with several lanes the lanes' threads
    # queue the chains.
    parts = HostParts(evaluator) if evaluator.options.lanes == 1 else None
    for p in range(cfg.passes):
        timing = time_pass(evaluator, chains, parts)
        passes.append(timing)
        log(f"  pass {p + 1}: {timing.wall_s:.2f} s ({len(chains)} chains"
            + (f", {evaluator.num_graphs} graphs)" if evaluator.options.cuda_graphs else ")"))
    first = passes[0].wall_s
    steady = min(passes[1:] or passes, key=lambda t: t.wall_s)
    steady_wall, steady_chains = steady.wall_s, steady.chain_s
    # Per-chain device times leave out host gaps between chains; scaled to the pass's
    # wall time, the ranks' split below counts those too.
    scale = steady_wall / max(sum(steady_chains), 1e-12)
    window = cfg.cadence_steps * cfg.step_time_s
    result = {
        "device": torch.cuda.get_device_name(device) if cuda else device.type,
        "torch": torch.__version__,
        "preset": cfg.preset,
        "precision": cfg.precision,
        "speed": dataclasses.asdict(built.eval_speed),
        "async_rank": cfg.async_rank,
        "lengths_source": "given" if cfg.lengths is not None else "assumed",
        "chains": [{"length": n, "seconds": s} for n, s in zip(lengths, steady_chains,
                                                                 strict=True)],
        "eval_seconds": steady_wall,
        "eval_seconds_first": first,
        # the steady pass: host seconds queueing each chain (a group's shared), and the
        # forwards the host queued only after the GPU had run out of work
        "host_queue_seconds": steady.queue_s,
        "host_late_chains": steady.host_late,
        "forwards": steady.forwards,
        "host_parts_seconds": steady.host_parts_s,
        "forward_device_seconds": steady.forward_device_s,
        "beside_training": training,  # {} unless the training step ran first
        "gpu_memory_gib": cfg.gpu_memory_gib,
        "warm_up_seconds": warm_up_s,
        "warm_up_shapes": [list(t) for t in shape_s],
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if cuda else 0.0,
        "peak_reserved_gib": torch.cuda.max_memory_reserved(device) / 2**30 if cuda else 0.0,
        "memory_before_gib": before,
        "step_time_s": cfg.step_time_s,
        "cadence_steps": cfg.cadence_steps,
        "evaluation_gpus_for_cadence": evaluation_gpus([s * scale for s in steady_chains],
                                                       window),
        "sync_overhead_fraction": steady_wall / window,
    }
    coeffs = iteration_flops_polynomial(built.model_config, cfg.max_msa_clusters,
                                        cfg.max_extra_msa, cfg.max_templates)
    iterations = cfg.num_recycling_iters + 1
    bucket = evaluator.options.bucket
    result["model_tflop"] = pass_flops(coeffs, lengths, bucket, iterations) / 1e12
    result["model_tflop_own_lengths"] = pass_flops(coeffs, lengths, 0, iterations) / 1e12
    if cfg.profile_length is not None:
        result["profile"] = profile_chain(built, cfg, device)
        log(result["profile"])
    return result


def iteration_flops_polynomial(model_config, n_clust: int, n_extra: int,
                               n_templ: int) -> list[int]:
    """FLOPs of one evaluation iteration as a polynomial in the chain length N: integer
    coefficients [c0, c1, c2, c3] of c0 + c1 N + c2 N² + c3 N³.

    Every matmul-class op of the network has at most three dimensions that grow with N
    (triangle attention and multiplication: N³), the others fixed by the MSA, extra-MSA and
    template counts and the widths, so the count is exactly such a cubic: four counts
    determine it and a fifth checks it. Counted as `bench step` counts (FlopCounterMode on
    the eager model without gradients), on the meta device: no memory, no arithmetic."""
    from fractions import Fraction

    from torch.utils.flop_counter import FlopCounterMode

    from scalefold.model.alphafold import AlphaFold
    from scalefold.train.evaluate import model_inputs
    from scalefold.utils.synthetic import synthetic_batch

    with torch.device("meta"):
        model = AlphaFold(model_config).eval()

    def count(n: int) -> int:
        feats = synthetic_batch(model_config, n, n_clust, n_extra, n_templ, num_iterations=1)
        feats = {k: v.to("meta") for k, v in model_inputs(feats).items()}
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(feats)
        return int(counter.get_total_flops())

    xs = (8, 16, 24, 32)
    ys = [count(x) for x in xs]
    # Lagrange's form, in exact fractions: the coefficients of the cubic through the
    # four points.
    coeffs = [Fraction(0)] * 4
    for i, (xi, yi) in enumerate(zip(xs, ys, strict=True)):
        basis = [Fraction(1)]  # prod over j != i of (N - xj) / (xi - xj), low degree first
        for j, xj in enumerate(xs):
            if j != i:
                basis = [(a - xj * b) / (xi - xj) for a, b in
                         zip([Fraction(0), *basis], [*basis, Fraction(0)], strict=True)]
        coeffs = [c + yi * b for c, b in zip(coeffs, basis, strict=True)]
    if any(c.denominator != 1 for c in coeffs) or _cubic(coeffs, 40) != count(40):
        raise RuntimeError("the evaluation's FLOP count is not a cubic in the chain length: "
                           f"counts {dict(zip(xs, ys, strict=True))}")
    return [int(c) for c in coeffs]


def _cubic(coeffs, n: int):
    return coeffs[0] + n * (coeffs[1] + n * (coeffs[2] + n * coeffs[3]))


def pass_flops(coeffs: list[int], lengths: list[int], bucket: int, iterations: int) -> int:
    """Model FLOPs of one evaluation pass: every chain at its padded length (what the
    device computes, padding included), `iterations` forward iterations each."""
    return iterations * sum(_cubic(coeffs, bucket_length(n, bucket)) for n in lengths)


BUCKET_FIT_SIZES = (16, 32, 64, 128)  # buckets the fit predicts a pass for


def bucket_fit(chains: list[dict], bucket: int) -> tuple[list[float], dict[int, float]] | None:
    """A model of a pass's cost from its own chain times: the median seconds of the chains
    of each padded length L (`bucket` residues to a bucket) fitted by least squares with
    t(L) = a + b L + c L² + d L³ (triangle attention and multiplication grow as L³; `a` is
    what a chain costs whatever its length: launches, not arithmetic). Returns [a, b, c, d]
    and the pass this predicts for the same lengths with each of `BUCKET_FIT_SIZES`;
    None with fewer than 4 padded lengths (or no buckets)."""
    import numpy as np

    if bucket <= 0:
        return None
    groups: dict[int, list[float]] = {}
    for c in chains:
        groups.setdefault(bucket_length(c["length"], bucket), []).append(c["seconds"])
    if len(groups) < 4:
        return None
    padded = np.array(sorted(groups), dtype=float)
    median = np.array([statistics.median(groups[int(x)]) for x in padded])
    d, c, b, a = np.polyfit(padded, median, 3)
    coeffs = [float(a), float(b), float(c), float(d)]

    def t(x: float) -> float:
        return coeffs[0] + x * (coeffs[1] + x * (coeffs[2] + x * coeffs[3]))

    predicted = {size: sum(t(bucket_length(ch["length"], size)) for ch in chains)
                 for size in BUCKET_FIT_SIZES}
    return coeffs, predicted


def _length_report(res: dict, chains: list[dict]) -> list[str]:
    """Per-chain seconds by 100-residue length band, and the fit of chain time against
    padded length."""
    bands: dict[int, list[float]] = {}
    for c in chains:
        bands.setdefault((c["length"] - 1) // 100, []).append(c["seconds"])
    lines = [f"{'length':>10s}{'chains':>8s}{'median s':>10s}{'max s':>8s}{'sum s':>8s}"]
    for b in sorted(bands):
        v = bands[b]
        lines.append(f"{f'{100 * b + 1}-{100 * b + 100}':>10s}{len(v):8d}"
                     f"{statistics.median(v):10.3f}{max(v):8.3f}{sum(v):8.2f}")
    lanes = int(res["speed"].get("eval_concurrent_chains", "1"))
    if lanes > 1:
        # A fit of the pass as a sum of chain times would count the overlap twice.
        lines.append(f"with {lanes} lanes the chains' spans overlap: a chain's seconds are "
                     f"its span beside the others', their sum {sum(c['seconds'] for c in chains):.1f} s "
                     f"against the pass's {res['eval_seconds']:.1f} s (no fit)")
        return lines
    buckets = res["speed"].get("eval_length_buckets", "off")
    fit = bucket_fit(chains, 0 if buckets == "off" else int(buckets))
    if fit is not None:
        (a, *_), predicted = fit
        lines.append(
            f"fit t(L) = a + bL + cL² + dL³ over the padded lengths: a = {a:.4f} s a chain "
            f"whatever its length ({len(chains) * a:.1f} s of the pass); the same chains "
            "with buckets of " + ", ".join(f"{k}: {v:.1f} s" for k, v in predicted.items())
            + " (a model, not a measurement)")
    return lines


def format_report(res: dict) -> str:
    chains = res["chains"]
    lines = [f"evaluation of {len(chains)} chains: {res['eval_seconds']:.2f} s steady, "
             f"{res['eval_seconds_first']:.2f} s first pass; peak memory "
             f"{res['peak_memory_gib']:.1f} GiB allocated, {res['peak_reserved_gib']:.1f} GiB "
             f"reserved ({res['memory_before_gib']:.1f} GiB before)"]
    queue = res.get("host_queue_seconds") or []
    lanes = int(res.get("speed", {}).get("eval_concurrent_chains", "1"))
    if queue and lanes > 1:
        lines.append(f"host time handing a chain to its lane's thread: median "
                     f"{1e3 * statistics.median(queue):.1f} ms ({lanes} lanes; each lane's "
                     f"thread queues its chains)")
    elif queue:
        lines.append(f"host time queueing a chain: median {1e3 * statistics.median(queue):.1f} "
                     f"ms, max {1e3 * max(queue):.1f} ms; queued after the GPU had finished "
                     f"the forward before: {res['host_late_chains']} "
                     f"of {res.get('forwards') or len(queue)} forwards")
    host_parts = res.get("host_parts_seconds") or {}
    if host_parts:
        lines.append("host time queueing a forward by part (median): " + ", ".join(
            f"{k} {1e3 * v:.1f} ms" for k, v in host_parts.items()))
    fwd = res.get("forward_device_seconds") or 0.0
    if fwd:
        lines.append(f"GPU time inside the forwards: {fwd:.2f} s of the pass's "
                     f"{res['eval_seconds']:.2f} s; outside them (copies, padding, scoring, "
                     f"GPU idle): {res['eval_seconds'] - fwd:.2f} s")
    tflop = res.get("model_tflop")
    if tflop:
        lines.append(f"model FLOPs: {tflop:.0f} TFLOP a pass at the padded lengths "
                     f"({res['model_tflop_own_lengths']:.0f} at the chains' own), "
                     f"{tflop / res['eval_seconds']:.1f} TFLOP/s")
    lines.extend(_length_report(res, chains))
    k = res["evaluation_gpus_for_cadence"]
    window = res["cadence_steps"] * res["step_time_s"]
    lines.append(f"a {res['cadence_steps']}-step cadence at {res['step_time_s']} s/step leaves "
                 f"{window:.1f} s: " + (f"{k} evaluation GPU(s) keep up" if k else
                                        "no number of evaluation GPUs keeps up (one chain is "
                                        "longer)")
                 + ("" if res.get("async_rank") else  # a rank that only evaluates
                    f"; synchronous evaluation adds {100 * res['sync_overhead_fraction']:.0f}% "
                    f"to the training time"))
    return "\n".join(lines)


def main(cfg: EvalBenchConfig, json_path: str | None = None) -> int:
    res = run_bench(cfg)
    print(format_report(res), flush=True)
    if json_path:
        Path(json_path).write_text(json.dumps(res, indent=1))
    return 0


def format_comparison(results: list[tuple[str, dict]]) -> str:
    """Variants side by side: warm-up, the steady pass, its ratio to the first variant
    that ran, peak memory; a variant that failed, with its error."""
    base = next((r["eval_seconds"] for _, r in results if "error" not in r), None)
    lines = [f"{'variant':64s}{'warm-up s':>10s}{'pass s':>9s}{'x first':>9s}"
             f"{'peak GiB':>10s}{'reserved':>10s}"]
    for name, r in results:
        if "error" in r:
            lines.append(f"{name[:64]:64s} FAILED: {r['error']}")
            continue
        lines.append(f"{name[:64]:64s}{r['warm_up_seconds']:10.1f}{r['eval_seconds']:9.2f}"
                     f"{r['eval_seconds'] / base:9.3f}{r['peak_memory_gib']:10.1f}"
                     f"{r['peak_reserved_gib']:10.1f}")
    return "\n".join(lines)


def compare_variants(variants: list[tuple[str, EvalBenchConfig]],
                     json_path: str | None = None) -> int:
    """`run_bench` for each (name, config) in turn, in this process (each builds its own
    step and evaluator, warms up and runs its passes; the previous one's memory is given
    back first), then the side-by-side table. A variant that raises is recorded with its
    error and the others still run; the JSON is rewritten after every variant, so a run
    cut short keeps what finished. Returns 1 if any variant failed."""
    import gc

    results = []
    for name, cfg in variants:
        print(f"== {name}", flush=True)
        try:
            res = run_bench(cfg)
            print(format_report(res), flush=True)
        except Exception as e:  # noqa: BLE001 - reported in the table, the others still run
            res = {"error": f"{type(e).__name__}: {e}"[:300]}
            print(f"  {name}: FAILED {res['error']}", flush=True)
        results.append((name, res))
        if json_path:
            Path(json_path).write_text(json.dumps({"variants": dict(results)}, indent=1))
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    print(format_comparison(results), flush=True)
    return 1 if any("error" in r for _, r in results) else 0


# ------------------------------------------------------------------ lDDT check
@torch.no_grad()
def redraw_zero_weights(tensors: list[torch.Tensor], seed: int) -> int:
    """Re-draw every all-zero weight matrix (AlphaFold's zero-initialised output and gate
    projections) from N(0, 1/fan_in), in place; returns how many."""
    gen = torch.Generator().manual_seed(seed)
    count = 0
    for t in tensors:
        if t.dim() >= 2 and not torch.any(t):
            draw = torch.randn(t.shape, generator=gen) / math.sqrt(t.shape[-1])
            t.copy_(draw.to(t.device, t.dtype))
            count += 1
    return count


def check_lddt(cfg: EvalBenchConfig, data_dir: Path, checkpoint: Path | None,
               tolerance: float, json_path: str | None = None,
               chains: tuple[str, ...] | None = None, log=print) -> int:
    """The mini dataset's validation chains (or `chains`) through the trainer's
    evaluation, fp32 vs `cfg`'s precision and speed-ups, from the same weights (module
    docstring)."""
    from scalefold.metrics import mean_over_chains
    from scalefold.train.distributed import discover
    from scalefold.train.trainer import Trainer

    split = json.loads((Path(data_dir) / "mini_split.json").read_text())
    val = chains or tuple(split["validation"])
    device = torch.device(cfg.device)
    base = dataclasses.replace(cfg.train_config(), data_dir=Path(data_dir),
                               val_chain_ids=val, train_chain_ids=tuple(split["train"]))
    swa_state = None
    if checkpoint is not None:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        if "swa" in state:  # a trainer checkpoint: evaluation reads its SWA weights
            swa_state = state["swa"]
        elif "alphafold_state_dict" in state:  # the MLPerf initial checkpoint
            base = dataclasses.replace(base, initialize_parameters_from=Path(checkpoint))
        else:
            raise ValueError(f"{checkpoint}: neither a trainer checkpoint ('swa') nor the "
                             f"MLPerf initial checkpoint ('alphafold_state_dict')")
        del state
    runs = {"fp32": dataclasses.replace(base, precision="fp32", speed=SpeedConfig()),
            "fast": base}
    if base.precision != "fp32" and base.speed != SpeedConfig():
        runs["plain"] = dataclasses.replace(base, speed=SpeedConfig())
    reference = None
    results: dict[str, dict] = {}
    for name, tcfg in runs.items():
        trainer = Trainer(tcfg, discover({}), device)
        if reference is None:
            if swa_state is not None:
                trainer.swa.load_state_dict(swa_state)
                log(f"weights: the SWA weights of {checkpoint}")
            elif checkpoint is not None:
                log(f"weights: the initial checkpoint {checkpoint}")
            else:
                n = redraw_zero_weights(trainer.swa.shadow, cfg.seed)
                log(f"weights: random (seed {cfg.seed}), {n} all-zero matrices re-drawn")
            reference = trainer.swa.state_dict()
        else:
            trainer.swa.load_state_dict(reference)
        trainer.build_data()
        # `Trainer.evaluate` on one rank, its per-chain scores kept.
        trainer.swa.copy_to(trainer.eval_model)
        per_chain = dict(trainer.evaluator.score_chains(trainer.val_loader))
        mean = mean_over_chains(per_chain.values())
        results[name] = {"precision": tcfg.precision, "speed": dataclasses.asdict(tcfg.speed),
                         "mean_lddt_ca": mean,
                         "per_chain": {trainer.val_dataset.chain_id(i): s
                                       for i, s in sorted(per_chain.items())}}
        log(f"{name:5s} ({tcfg.precision}): mean lDDT-Ca {mean:.6f}; " + ", ".join(
            f"{c} {s:.6f}" for c, s in results[name]["per_chain"].items()))
        del trainer
        if device.type == "cuda":
            torch.cuda.empty_cache()
    means = {name: r["mean_lddt_ca"] for name, r in results.items()}
    diff = means["fast"] - means["fp32"]
    near_fp32 = math.isfinite(diff) and abs(diff) <= tolerance
    log(f"difference (fast - fp32): {diff:+.2e}; |difference| <= {tolerance:g}: "
        f"{'yes' if near_fp32 else 'NO'}")
    ok, reason = lddt_verdict(means["fp32"], means["fast"], means.get("plain"), tolerance)
    if "plain" in means:  # the verdict differs from the line above only through plain
        log(f"difference (plain - fp32): {means['plain'] - means['fp32']:+.2e}; "
            f"(fast - plain): {means['fast'] - means['plain']:+.2e}")
        log(f"verdict: {reason}: {'yes' if ok else 'NO'}")
    if json_path:
        Path(json_path).write_text(json.dumps(
            {"device": torch.cuda.get_device_name(device) if device.type == "cuda"
             else device.type, "torch": torch.__version__, "chains": list(val),
             "runs": results, "difference": diff, "tolerance": tolerance,
             "within_tolerance_of_fp32": near_fp32, "ok": ok, "verdict": reason},
            indent=1))
    return 0 if ok else 1


def lddt_verdict(fp32: float, fast: float, plain: float | None,
                 tolerance: float) -> tuple[bool, str]:
    """Whether the fast path's mean lDDT-Cα passes, and the comparison that decided.

    Within `tolerance` of fp32 passes. Otherwise, where the plain run at the fast path's
    precision (`plain`, no speed-ups) is itself beyond `tolerance` from fp32, the
    precision accounts for the gap and the fast path passes if within `tolerance` of
    `plain`. A kernel fault (a chain scored 0, a NaN) fails either comparison."""
    if not all(map(math.isfinite, (fp32, fast))):
        return False, "finite means"
    if abs(fast - fp32) <= tolerance:
        return True, f"|fast - fp32| <= {tolerance:g}"
    if plain is None or not math.isfinite(plain) or abs(plain - fp32) <= tolerance:
        return False, f"|fast - fp32| <= {tolerance:g}"
    return (abs(fast - plain) <= tolerance,
            f"|fast - fp32| > {tolerance:g} as |plain - fp32|; |fast - plain| <= {tolerance:g}")
