"""`scalefold bench train`: the real trainer, timed.

Runs `scalefold train` itself (`run_training`: the MLPerf log, the data loaders and their
workers, the evaluation cadence, checkpoints) with the same flags, by default at the
benchmark's shapes (mlperf preset, crop 256, 124 + 1024 MSA rows, 4 templates, recycling
drawn uniformly from 0..3) on the embedded mini dataset, and reports from the trainer's
own events:

- the steady-state time per step by recycling count: the interval between consecutive
  steps' results reaching the host, leaving out the first `warmup` steps and any interval
  that spans an evaluation or a checkpoint; medians, and their uniform average over n
  (what `bench step` reports);
- the time each evaluation took, and the stall around it beyond one step (evaluation,
  checkpoint, loader refill);
- how long the loop waited for the data loader per step;
- the time from the start to the first step (initialisation and the timed region's data
  indexing).

With `--compare-step`, the same step (precision and speed-ups) is then timed by `bench
step` in the same process on synthetic batches of the same shapes, and the difference is
printed: the two must agree (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from scalefold.train.config import TrainConfig


@dataclass
class TrainBenchResult:
    per_n: dict[int, list[float]] = field(default_factory=dict)  # steady-state intervals
    device_per_n: dict[int, list[float]] = field(default_factory=dict)  # CUDA-event times
    # device time between a steady step and the one before (CUDA events)
    idle_s: list[float] = field(default_factory=list)
    data_wait_s: list[float] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)  # iteration, seconds, stall_s
    startup_s: float = 0.0  # start to the first step's results
    steps: int = 0
    wall_s: float = 0.0
    # Every step in order (iteration, n, launched_at and results_at: host seconds since
    # the start, device_s, idle_before_s, data_wait_s, launch_s: the host's launch time
    # by part), for reading the loop's timeline: in call 30 launching a step took the
    # host until about the previous step's end.
    timeline: list[dict] = field(default_factory=list)
    launch_s: dict[str, float] = field(default_factory=dict)  # median host s by part

    @property
    def medians(self) -> dict[int, float]:
        return {n: statistics.median(v) for n, v in sorted(self.per_n.items()) if v}

    @property
    def avg_s(self) -> float:
        """Uniform average over the recycling counts seen (the benchmark's draw)."""
        return statistics.fmean(self.medians.values())

    @property
    def device_medians(self) -> dict[int, float]:
        return {n: statistics.median(v) for n, v in sorted(self.device_per_n.items()) if v}

    @property
    def device_avg_s(self) -> float | None:
        """Uniform average of the steps' own device times (None without CUDA events)."""
        return statistics.fmean(self.device_medians.values()) if self.device_per_n else None

    @property
    def host_gap_s(self) -> float | None:
        """Mean device time between consecutive steady steps: the batch's copy to the
        device and what the GPU waits for the host and the loader (None without CUDA
        events). Measured on the GPU's own clock between one step's end and the next
        one's start: the host intervals cannot give it, as a step's results reach the
        host a launch later, which moves time between neighbouring intervals."""
        return statistics.fmean(self.idle_s) if self.idle_s else None


class _Recorder:
    """Collects the trainer's events with their host times."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.steps: list = []  # StepResult
        self.breaks: list[tuple[int, str, float]] = []  # (iteration, event, time)

    def __call__(self, name: str, data: dict) -> None:
        now = time.perf_counter()
        if name == "step":
            self.steps.append(data["step"])
        elif name in ("eval_start", "eval_stop", "cycle_stop"):
            it = self.steps[-1].iteration if self.steps else 0
            self.breaks.append((it, name, now))


def summarise(rec: _Recorder, warmup: int, checkpoint_every: int) -> TrainBenchResult:
    res = TrainBenchResult(steps=len(rec.steps), wall_s=time.perf_counter() - rec.t0)
    if not rec.steps:
        return res
    res.startup_s = rec.steps[0].done_at - rec.t0
    res.timeline = [{"iteration": s.iteration, "n": s.num_recycling,
                     "launched_at": s.done_at - s.seconds - rec.t0,
                     "results_at": s.done_at - rec.t0, "device_s": s.device_s,
                     "idle_before_s": s.idle_before_s, "data_wait_s": s.data_wait_s,
                     "launch_s": s.launch_s}
                    for s in rec.steps]
    after_break = {it for it, name, _ in rec.breaks if name == "cycle_stop"}
    if checkpoint_every > 0:
        after_break |= {s.iteration for s in rec.steps if s.iteration % checkpoint_every == 0}
    intervals: dict[int, float] = {}
    for prev, cur in zip(rec.steps, rec.steps[1:], strict=False):
        dt = cur.done_at - prev.done_at
        if prev.iteration in after_break:
            continue  # spans an evaluation, a checkpoint or a cycle boundary
        intervals[cur.iteration] = dt
        if cur.iteration > rec.steps[0].iteration + warmup:
            res.per_n.setdefault(cur.num_recycling, []).append(dt)
    for prev, s in zip([None, *rec.steps], rec.steps, strict=False):
        if s.device_s is None or s.iteration <= rec.steps[0].iteration + warmup:
            continue
        res.device_per_n.setdefault(s.num_recycling, []).append(s.device_s)
        if s.idle_before_s is not None and prev is not None and prev.iteration not in after_break:
            res.idle_s.append(s.idle_before_s)
    res.data_wait_s = [s.data_wait_s for s in rec.steps[warmup:]]
    parts = sorted({k for s in rec.steps[warmup:] for k in s.launch_s})
    res.launch_s = {k: statistics.median(s.launch_s.get(k, 0.0) for s in rec.steps[warmup:])
                    for k in parts}
    starts = {it: t for it, name, t in rec.breaks if name == "eval_start"}
    stops = {it: t for it, name, t in rec.breaks if name == "eval_stop"}
    step_at = {s.iteration: s for s in rec.steps}
    typical = statistics.median(intervals.values()) if intervals else 0.0
    for it in sorted(starts):
        seconds = stops.get(it, starts[it]) - starts[it]
        nxt = step_at.get(it + 1)
        span = nxt.done_at - step_at[it].done_at if nxt is not None else float("nan")
        res.evals.append({"iteration": it, "seconds": seconds,
                          "stall_s": span - seconds - typical})
    return res


def format_report(res: TrainBenchResult, label: str) -> str:
    lines = [f"bench train ({label}): {res.steps} steps, {res.wall_s:.1f} s wall, "
             f"{res.startup_s:.1f} s from start to the first step"]
    if res.per_n:
        lines.append("steady state, s per step: " + ", ".join(
            f"n={n} {m:.4f} ({len(res.per_n[n])} steps)" for n, m in res.medians.items())
            + f"; uniform average {res.avg_s:.4f}")
    if res.device_per_n:
        lines.append("device time per step (CUDA events): " + ", ".join(
            f"n={n} {m:.4f}" for n, m in res.device_medians.items())
            + f"; uniform average {res.device_avg_s:.4f}")
        if res.host_gap_s is not None:
            lines.append(f"the GPU between steps (the batch's copy, waits for host and loader) "
                         f"{1e3 * res.host_gap_s:.1f} ms a step on average, max "
                         f"{1e3 * max(res.idle_s):.1f} ms ({100 * res.host_gap_s / res.device_avg_s:.1f}% "
                         f"of the device step)")
    if res.data_wait_s:
        lines.append(f"data-loader wait per step: median {statistics.median(res.data_wait_s):.4f}"
                     f" s, max {max(res.data_wait_s):.4f} s")
    if res.launch_s:
        lines.append("host time launching a step (median): " + ", ".join(
            f"{k} {1e3 * v:.1f} ms" for k, v in res.launch_s.items())
            + " (a part that waits for the running step shows here)")
    for e in res.evals:
        lines.append(f"evaluation at step {e['iteration']}: {e['seconds']:.2f} s, "
                     f"stall beyond it and one step {e['stall_s']:.2f} s")
    return "\n".join(lines)


def run(cfg: TrainConfig, warmup: int, compare_step: bool, json_path: str | None,
        label: str) -> int:
    from scalefold.train.run import run_training

    rec = _Recorder()
    outcome = run_training(cfg, observe=rec)
    if outcome.rank != 0:
        return 0
    res = summarise(rec, warmup, cfg.checkpoint_every_iters)
    print(format_report(res, label), flush=True)
    out: dict = {"config": repr(cfg), "train": asdict(res) | {
        "medians": res.medians, "avg_s": res.avg_s if res.per_n else None,
        "device_medians": res.device_medians, "device_avg_s": res.device_avg_s,
        "host_gap_s": res.host_gap_s}}
    if compare_step and res.per_n:
        step_avg = _bench_step_avg(cfg, tuple(sorted(res.per_n)), label)
        diff = 100 * (res.avg_s / step_avg - 1)
        print(f"trainer {res.avg_s:.4f} s, bench step {step_avg:.4f} s: "
              f"the trainer's step is {diff:+.1f}% of bench step's", flush=True)
        out["bench_step_avg_s"] = step_avg
        out["difference_pct"] = diff
    if json_path:
        env = {"torch": torch.__version__}
        if torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name()
        Path(json_path).write_text(json.dumps(out | {"env": env}, indent=1, default=str))
    return 0


def _bench_step_avg(cfg: TrainConfig, recycles: tuple[int, ...], label: str) -> float:
    """`bench step`'s uniform average for the trainer's own settings, in this process."""
    import gc

    from scalefold.bench.step import BenchConfig, Shapes, Variant, format_table, run_bench

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    variant = Variant(label, cfg.precision, cfg.speed, cfg.activation_checkpointing)
    bcfg = BenchConfig(
        preset=cfg.preset, device="cuda" if torch.cuda.is_available() else "cpu",
        recycles=recycles, warmup=2, steps=5, seed=cfg.seed, count_flops=False,
        shapes=Shapes(cfg.crop_size, cfg.max_msa_clusters, cfg.max_extra_msa,
                      cfg.max_templates),
    )
    results, flops = run_bench(bcfg, variants=[variant])
    print(format_table(results, flops, recycles, None), flush=True)
    if results[0].error:
        raise RuntimeError(f"bench step failed: {results[0].error}")
    return results[0].avg_s
