"""`scalefold bench dap`: training-step time by DAP size (docs/DAP.md).

For every DAP size P, P processes on this host (`torch.multiprocessing` spawn; gloo on
CPU, NCCL on CUDA with one GPU per process) build the same model (same seed) and the same
synthetic sample and run the trainer's step (`build_step` with a DAP topology: forward
with a fixed number of recycling iterations, the MLPerf loss, backward, clipping, Adam,
EMA). P = 1 is the plain model in one process: the baseline DAP has to beat. As in
training, the sharded parameters' partial gradients are scaled by P and one all-reduce
(mean) of a flat gradient buffer after backward makes them the one-process gradient.

Reported per P: the median step time (the slowest rank's time per step: a step is done
when every rank is), the speed-up over P = 1 and its efficiency, peak memory per rank
(CUDA), the bytes each rank receives per step in the DAP collectives, and the loss of the
first step, which must agree across P (DAP computes the one-process step), and the loss
after the timed steps, which agrees when the updates were the same.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import statistics
from collections import Counter
from dataclasses import asdict, dataclass, field

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
from scalefold.train.topology import Topology
from scalefold.utils.synthetic import synthetic_batch


@dataclass(frozen=True)
class DapBenchConfig:
    preset: str = "mlperf"
    device: str = "cuda"
    dap_sizes: tuple[int, ...] = (1, 2, 4, 8)
    variant: str = "eager@fp32"  # a `bench step` variant; its kernels apply inside the shards
    recycles: int = 0  # gradient-free recycling iterations before the last one
    warmup: int = 2
    steps: int = 5
    seed: int = 0
    activation_checkpointing: bool = False
    threads: int | None = None  # CPU threads per rank; default: cores // P
    shapes: Shapes | None = None  # default by preset


@dataclass
class DapResult:
    dap_size: int
    times_s: list[float] = field(default_factory=list)  # per step, slowest rank
    peak_mem_gib: list[float] = field(default_factory=list)  # per rank (CUDA)
    comm_bytes: dict[str, float] = field(default_factory=dict)  # received per rank, by kind
    comm_calls: dict[str, int] = field(default_factory=dict)
    first_loss: float = float("nan")
    last_loss: float = float("nan")  # after every timed update
    threads: int = 0
    wall_s: float = 0.0
    error: str | None = None

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def comm_mb(self) -> float:
        return sum(self.comm_bytes.values()) / 1e6


def resolve_shapes(cfg: DapBenchConfig) -> Shapes:
    return cfg.shapes or PRESET_SHAPES[cfg.preset]


def check_config(cfg: DapBenchConfig) -> None:
    """Errors a launch would otherwise hit on P processes at once, raised here once."""
    n = resolve_shapes(cfg).n_res
    bad = [p for p in cfg.dap_sizes if p < 1 or n % p]
    if bad:
        raise ValueError(
            f"the number of residues N={n} must be divisible by every DAP size; "
            f"it is not by {bad} (choose --n-res as a multiple of {math.lcm(*cfg.dap_sizes)})"
        )
    variant = parse_variant(cfg.variant)
    if variant.speed.compile_glue:
        # compile_glue traces the plain blocks' forward; the DAP subclasses replace it.
        raise ValueError("compiled variants are not supported under DAP")
    if variant.speed.cuda_graphs and not cfg.device.startswith("cuda"):
        raise ValueError(f"variant {cfg.variant!r} captures CUDA graphs: it needs "
                         f"--device cuda, not {cfg.device!r}")
    if cfg.device.startswith("cuda"):
        have = torch.cuda.device_count()
        if max(cfg.dap_sizes) > have:
            raise ValueError(f"DAP size {max(cfg.dap_sizes)} needs as many GPUs; {have} visible")


class CommCounter:
    """Bytes each rank receives in the DAP collectives, by kind.

    The collectives of `scalefold.parallel` go through four functions, replaced here by
    counting wrappers for the duration of `counting()`. Volumes are those of the ring
    algorithms, as in docs/DAP.md: an all-gather of a whole tensor X receives (P-1)/P·X,
    a reduce-scatter of X as much, an all-to-all of a local block B receives (P-1)/P·B,
    and an all-reduce of X 2(P-1)/P·X.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.bytes: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()

    def _wrap(self, kind: str, fn, volume):
        def wrapped(*args, **kwargs):
            self.calls[kind] += 1
            self.bytes[kind] += volume(*args[:2])
            return fn(*args, **kwargs)

        return wrapped

    @contextlib.contextmanager
    def counting(self):
        from scalefold.parallel import comm

        p = self.size
        frac = (p - 1) / p
        saved = (comm._all_gather_single, comm._reduce_scatter_single,
                 dist.all_to_all_single, dist.all_reduce)
        comm._all_gather_single = self._wrap(
            "all_gather", saved[0], lambda out, inp: frac * out.nbytes)
        comm._reduce_scatter_single = self._wrap(
            "reduce_scatter", saved[1], lambda out, inp: frac * inp.nbytes)
        dist.all_to_all_single = self._wrap(
            "all_to_all", saved[2], lambda out, inp: frac * inp.nbytes)
        dist.all_reduce = self._wrap(
            "all_reduce", saved[3], lambda t, *_: 2 * frac * t.nbytes)
        try:
            yield self
        finally:
            (comm._all_gather_single, comm._reduce_scatter_single,
             dist.all_to_all_single, dist.all_reduce) = saved


def _measure_rank(rank: int, size: int, device: torch.device, cfg: DapBenchConfig) -> dict:
    group = None
    if size > 1:
        from scalefold.parallel import new_dap_groups

        group, _ = new_dap_groups(size)  # the trainer's grouping; here one group of all
    return _measure(cfg, size, rank, group, device)


def _measure(cfg: DapBenchConfig, size: int, rank: int, group, device: torch.device) -> dict:
    variant = parse_variant(cfg.variant)
    variant = dataclasses.replace(variant, speed=dataclasses.replace(variant.speed,
                                                                     grad_sync="flat"))
    model_cfg = getattr(AlphaFoldConfig, cfg.preset)()
    shapes = resolve_shapes(cfg)
    # Every rank draws the same sample and the same weights and dropout masks: the DAP
    # group's contract (docs/DAP.md, requirements 1-2).
    batch = synthetic_batch(model_cfg, shapes.n_res, shapes.n_clust, shapes.n_extra,
                            shapes.n_templ, num_iterations=cfg.recycles + 1, seed=cfg.seed,
                            device=device)
    topo = Topology(rank=rank, world_size=size, num_eval_ranks=0, dap_size=size,
                    dap_group=group)
    torch.manual_seed(cfg.seed)  # dropout: the same stream on every rank
    runner = StepRunner(step_config(cfg.preset, variant, cfg.seed,
                                    cfg.activation_checkpointing), device, topo)

    # The first step is the one counted (its collectives are the same in every step) and
    # the first warm-up step; its loss is before any update, so it is comparable across P.
    # It runs eagerly for graph variants too: a replay calls no Python to count.
    counter = CommCounter(size)
    with counter.counting():
        first_loss = float(runner.train_step(batch, runner.use_clamped).loss)
    # Captures graph variants (leaving the training state as it was), then warms up. The
    # peak is not reset afterwards: a graph allocates its activations at capture.
    time_steps(runner, batch, max(0, cfg.warmup - 1), 0)
    if size > 1:
        dist.barrier()  # start the timed steps together: the ranks wait on each other
    times = time_steps(runner, batch, 0, cfg.steps)
    _sync(device)
    mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    last_loss = float(runner.step(batch))  # after every update above
    return {"times_s": times, "peak_mem_gib": mem, "first_loss": first_loss,
            "last_loss": last_loss,
            "comm_bytes": dict(counter.bytes), "comm_calls": dict(counter.calls)}


def run_size(cfg: DapBenchConfig, size: int) -> DapResult:
    """Spawn `size` processes, run the benchmark on them, collect their measurements."""
    threads = cfg.threads or max(1, cpu_count() // size)
    res = DapResult(size, threads=threads if not cfg.device.startswith("cuda") else 0)
    run = spawn_ranks(_measure_rank, (cfg,), size, cfg.device.startswith("cuda"), threads)
    res.wall_s, res.error, ranks = run.wall_s, run.error, run.ranks
    if res.error:
        return res
    res.times_s = [max(step) for step in zip(*(r["times_s"] for r in ranks))]
    res.peak_mem_gib = [r["peak_mem_gib"] for r in ranks]
    res.comm_bytes = ranks[0]["comm_bytes"]
    res.comm_calls = ranks[0]["comm_calls"]
    res.first_loss = ranks[0]["first_loss"]
    res.last_loss = ranks[0]["last_loss"]
    return res


def run_bench(cfg: DapBenchConfig, log=print) -> list[DapResult]:
    check_config(cfg)
    results = []
    for size in cfg.dap_sizes:
        res = run_size(cfg, size)
        results.append(res)
        if res.error:
            log(f"  P={size}: FAILED {res.error}")
        else:
            log(f"  P={size}: median {res.median_s:.4f} s, {res.comm_mb:.1f} MB/step/rank, "
                f"{res.wall_s:.0f} s wall")
    return results


def format_table(results: list[DapResult], n_res: int, cuda: bool) -> str:
    head = (f"{'P':>3s}{'N/P':>5s}{'median s':>10s}{'min s':>9s}{'speed-up':>10s}"
            f"{'eff %':>7s}")
    head += f"{'peak GiB/rank':>15s}" if cuda else f"{'threads/rank':>14s}"
    head += f"{'comm MB/rank':>14s}{'collectives':>13s}{'first loss':>14s}{'last loss':>14s}"
    lines = [head]
    base = next((r.median_s for r in results if r.dap_size == 1 and not r.error), None)
    for r in results:
        if r.error:
            lines.append(f"{r.dap_size:3d} FAILED: {r.error}")
            continue
        speedup = base / r.median_s if base else float("nan")
        row = (f"{r.dap_size:3d}{n_res // r.dap_size:5d}{r.median_s:10.4f}"
               f"{min(r.times_s):9.4f}{speedup:10.2f}{100 * speedup / r.dap_size:7.0f}")
        row += f"{max(r.peak_mem_gib):15.2f}" if cuda else f"{r.threads:14d}"
        row += (f"{r.comm_mb:14.1f}{sum(r.comm_calls.values()):13d}{r.first_loss:14.6f}"
                f"{r.last_loss:14.6f}")
        lines.append(row)
    return "\n".join(lines)


def results_json(cfg: DapBenchConfig, results: list[DapResult]) -> str:
    env = {"torch": torch.__version__, "cpus": cpu_count()}
    if cfg.device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name()
        env["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
    out = {
        "config": asdict(cfg) | {"shapes": asdict(resolve_shapes(cfg))},
        "env": env,
        "results": [asdict(r) | {"median_s": r.median_s if r.times_s else None,
                                 "comm_mb": r.comm_mb} for r in results],
    }
    return json.dumps(out, indent=1)


def main(cfg: DapBenchConfig, json_path: str | None = None) -> int:
    shapes = resolve_shapes(cfg)
    try:
        check_config(cfg)
    except ValueError as e:
        print(f"bench dap: error: {e}")
        return 2
    print(f"bench dap: preset={cfg.preset} device={cfg.device} torch={torch.__version__} "
          f"N={shapes.n_res} clusters={shapes.n_clust} extra={shapes.n_extra} "
          f"templates={shapes.n_templ} variant={cfg.variant} recycles={cfg.recycles} "
          f"warmup={cfg.warmup} steps={cfg.steps} dap_sizes={cfg.dap_sizes}", flush=True)
    results = run_bench(cfg)
    print(format_table(results, shapes.n_res, cfg.device.startswith("cuda")))
    if json_path:
        with open(json_path, "w") as f:
            f.write(results_json(cfg, results))
    return 0 if all(r.error is None for r in results) else 1
