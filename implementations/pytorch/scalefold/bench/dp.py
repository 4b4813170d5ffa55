"""`scalefold bench dp`: training-step time by data-parallel world size (weak scaling).

For every world size W, W processes on this host (spawned; gloo on CPU, NCCL on CUDA with
one GPU per process) each run the trainer's step (`build_step`) of one `bench step`
`--variant` on a sample of their own (seed + rank), with the gradients averaged across
ranks by one of (`SpeedConfig.grad_sync`):

- `ddp`: `DistributedDataParallel` (bucketed all-reduces overlapped with backward);
- `flat`: one all-reduce of a flat gradient buffer after backward (`FlatGradSync`);
  with a `+graphs` variant, backward and the update are two CUDA graphs around it;
- `bucketed`: that buffer's buckets all-reduced from inside backward
  (`BucketedGradSync`); with graphs, one graph holds the step and its collectives.

Weak scaling (the benchmark's: one sample per GPU): efficiency = t(1) / t(W) for the same
mode. Reported per (mode, W): median step time (per step the slowest rank's), the
efficiency, samples/s (W / step time), and peak memory per rank (CUDA).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from scalefold.bench.spawn import cpu_count, spawn_ranks
from scalefold.bench.step import (
    PRESET_SHAPES,
    Shapes,
    StepRunner,
    _sync,
    parse_variant,
    step_config,
    time_steps,
)
from scalefold.model import AlphaFoldConfig
from scalefold.train.config import SpeedConfig
from scalefold.train.topology import Topology
from scalefold.utils.synthetic import synthetic_batch

MODES = typing.get_args(typing.get_type_hints(SpeedConfig)["grad_sync"])


@dataclass(frozen=True)
class DpBenchConfig:
    preset: str = "mlperf"
    device: str = "cuda"
    world_sizes: tuple[int, ...] = (1, 2, 4, 8)
    modes: tuple[str, ...] = MODES
    variant: str = "h100+cuda_graphs=0+compile_glue=0"  # a `bench step` variant
    recycles: int = 0  # gradient-free recycling iterations before the last one
    warmup: int = 2
    steps: int = 5
    seed: int = 0
    threads: int | None = None  # CPU threads per rank; default: cores // W
    shapes: Shapes | None = None  # default by preset


@dataclass
class DpResult:
    mode: str
    world_size: int
    times_s: list[float] = field(default_factory=list)  # per step, slowest rank
    peak_mem_gib: list[float] = field(default_factory=list)  # per rank (CUDA)
    wall_s: float = 0.0
    error: str | None = None

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)


def check_config(cfg: DpBenchConfig) -> None:
    variant = parse_variant(cfg.variant)
    unknown = [m for m in cfg.modes if m not in MODES]
    if unknown:
        raise ValueError(f"unknown modes {unknown}; known: {list(MODES)}")
    if variant.speed.cuda_graphs and "ddp" in cfg.modes:
        raise ValueError("graph variants need --modes flat or bucketed (DDP's hooks are "
                         "not captured)")
    if cfg.device.startswith("cuda"):
        have = torch.cuda.device_count()
        if max(cfg.world_sizes) > have:
            raise ValueError(f"world size {max(cfg.world_sizes)} needs as many GPUs; "
                             f"{have} visible")


def _measure(rank: int, world: int, device: torch.device, cfg: DpBenchConfig,
             mode: str) -> dict:
    variant = parse_variant(cfg.variant)
    variant = dataclasses.replace(variant, speed=dataclasses.replace(variant.speed,
                                                                     grad_sync=mode))
    model_cfg = getattr(AlphaFoldConfig, cfg.preset)()
    shapes = cfg.shapes or PRESET_SHAPES[cfg.preset]
    batch = synthetic_batch(model_cfg, shapes.n_res, shapes.n_clust, shapes.n_extra,
                            shapes.n_templ, num_iterations=cfg.recycles + 1,
                            seed=cfg.seed + rank, device=device)
    # The trainer's step for `world` training ranks; the same weights on every rank.
    runner = StepRunner(step_config(cfg.preset, variant, cfg.seed), device,
                        Topology(rank=rank, world_size=world, num_eval_ranks=0))
    # The peak is not reset after warm-up: graph variants allocate their activations once,
    # at capture, and replays never touch the allocator.
    time_steps(runner, batch, cfg.warmup, 0)
    if world > 1:
        dist.barrier()  # start the timed steps together
    times = time_steps(runner, batch, 0, cfg.steps)
    _sync(device)
    mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    return {"times_s": times, "peak_mem_gib": mem}


def run_one(cfg: DpBenchConfig, mode: str, world: int) -> DpResult:
    threads = cfg.threads or max(1, cpu_count() // world)
    res = DpResult(mode, world)
    run = spawn_ranks(_measure, (cfg, mode), world, cfg.device.startswith("cuda"), threads)
    res.wall_s, res.error, ranks = run.wall_s, run.error, run.ranks
    if res.error:
        return res
    res.times_s = [max(step) for step in zip(*(r["times_s"] for r in ranks))]
    res.peak_mem_gib = [r["peak_mem_gib"] for r in ranks]
    return res


def run_bench(cfg: DpBenchConfig, log=print) -> list[DpResult]:
    check_config(cfg)
    results = []
    for mode in cfg.modes:
        for world in cfg.world_sizes:
            res = run_one(cfg, mode, world)
            results.append(res)
            if res.error:
                log(f"  {mode} W={world}: FAILED {res.error}")
            else:
                log(f"  {mode} W={world}: median {res.median_s:.4f} s, {res.wall_s:.0f} s wall",
                    flush=True)
    return results


def format_table(results: list[DpResult], cuda: bool) -> str:
    head = f"{'mode':6s}{'W':>4s}{'median s':>10s}{'min s':>9s}{'eff %':>7s}{'samples/s':>11s}"
    head += f"{'peak GiB/rank':>15s}" if cuda else ""
    lines = [head]
    for r in results:
        if r.error:
            lines.append(f"{r.mode:6s}{r.world_size:4d} FAILED: {r.error}")
            continue
        base = next((b.median_s for b in results
                     if b.mode == r.mode and b.world_size == 1 and not b.error), None)
        eff = 100 * base / r.median_s if base else float("nan")
        row = (f"{r.mode:6s}{r.world_size:4d}{r.median_s:10.4f}{min(r.times_s):9.4f}"
               f"{eff:7.0f}{r.world_size / r.median_s:11.3f}")
        row += f"{max(r.peak_mem_gib):15.2f}" if cuda else ""
        lines.append(row)
    return "\n".join(lines)


def main(cfg: DpBenchConfig, json_path: str | None = None) -> int:
    try:
        check_config(cfg)
    except ValueError as e:
        print(f"bench dp: error: {e}")
        return 2
    print(f"bench dp: preset={cfg.preset} device={cfg.device} torch={torch.__version__} "
          f"variant={cfg.variant} modes={cfg.modes} world_sizes={cfg.world_sizes} "
          f"recycles={cfg.recycles} warmup={cfg.warmup} steps={cfg.steps}", flush=True)
    results = run_bench(cfg)
    print(format_table(results, cfg.device.startswith("cuda")))
    if json_path:
        env = {"torch": torch.__version__, "cpus": cpu_count()}
        if cfg.device.startswith("cuda") and torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name()
        out = {"config": asdict(cfg), "env": env,
               "results": [asdict(r) | {"median_s": r.median_s if r.times_s else None}
                           for r in results]}
        Path(json_path).write_text(json.dumps(out, indent=1))
    return 0 if all(r.error is None for r in results) else 1
