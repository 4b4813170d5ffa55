"""Predicted time to train against GPU count, by DAP size and node kind; the best
global batch and number of evaluation ranks at each point; a table and a plot."""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from pathlib import Path

from scalefold.plan.config import Cluster, RunShape
from scalefold.plan.model import PlanOptions, Prediction, predict
from scalefold.plan.profile import Profile

NODES = (1, 2, 4, 8, 16, 32, 64, 128, 192, 256, 260, 320)
DAP_SIZES = (1, 2, 4, 8)
BATCHES = (128, 160, 192, 224, 256)
EVAL_RANKS = (0, 8, 16, 32, 64, 128)


@dataclass(frozen=True)
class SweepPoint:
    cluster: str
    nodes: int
    gpus: int
    dap_size: int
    prediction: Prediction | None  # the best shape at this point; None: nothing fits

    @property
    def minutes(self) -> float:
        return self.prediction.stats.olympic_mean_s / 60 if self.prediction else float("inf")


def best_shape(cluster: Cluster, dap: int, profile: Profile, options: PlanOptions,
               batches=BATCHES, eval_ranks=EVAL_RANKS) -> Prediction | None:
    """The fastest (global batch, evaluation ranks) at this DAP size whose step fits the
    GPU; None when none does."""
    best = None
    for b in batches:
        for e in eval_ranks:
            if e >= cluster.gpus or cluster.gpus - e < dap:
                continue
            shape = RunShape(global_batch=b, dap_size=dap, eval_ranks=e)
            try:
                p = predict(cluster, shape, profile, options)
            except ValueError:
                continue
            if not p.step.fits:
                continue
            if best is None or p.stats.olympic_mean_s < best.stats.olympic_mean_s:
                best = p
    return best


def sweep(clusters: list[Cluster], profile: Profile, options: PlanOptions,
          nodes=NODES, dap_sizes=DAP_SIZES, batches=BATCHES,
          eval_ranks=EVAL_RANKS) -> list[SweepPoint]:
    out = []
    for c in clusters:
        for n in nodes:
            cn = c.with_nodes(n)
            for p in dap_sizes:
                if p > cn.gpus_per_node:
                    continue
                best = best_shape(cn, p, profile, options, batches, eval_ranks)
                out.append(SweepPoint(c.name, n, cn.gpus, p, best))
    return out


def fewest_nodes_to_beat(cluster: Cluster, dap: int, profile: Profile, options: PlanOptions,
                         minutes: float, max_nodes: int = 512, batches=BATCHES,
                         eval_ranks=EVAL_RANKS) -> tuple[int, Prediction] | None:
    """The fewest nodes whose best shape at this DAP size is predicted under `minutes`:
    a doubling search, then every node count in the last bracket."""
    def under(n: int) -> Prediction | None:
        p = best_shape(cluster.with_nodes(n), dap, profile, options, batches, eval_ranks)
        return p if p is not None and p.stats.olympic_mean_s / 60 < minutes else None

    lo, n = 0, 1
    while n <= max_nodes and under(n) is None:
        lo, n = n, n * 2
    if n > max_nodes:
        n = max_nodes
        if under(n) is None:
            return None
    for m in range(lo + 1, n + 1):
        p = under(m)
        if p is not None:
            return m, p
    return None


def eval_speedup_to_beat(cluster: Cluster, shape: RunShape, profile: Profile,
                         options: PlanOptions, minutes: float,
                         limit: float = 64.0) -> float | None:
    """The smallest evaluation speed-up (over the profiled evaluation) at which `shape`
    is predicted under `minutes`; None if even `limit` is not enough."""
    def score(x: float) -> float:
        return predict(cluster, shape, profile, replace(options, eval_speedup=x)
                       ).stats.olympic_mean_s / 60

    if score(1.0) < minutes:
        return 1.0
    if score(limit) >= minutes:
        return None
    lo, hi = 1.0, limit
    while hi / lo > 1.01:
        mid = (lo * hi) ** 0.5
        lo, hi = (lo, mid) if score(mid) < minutes else (mid, hi)
    return hi


def write_table(points: list[SweepPoint], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["cluster", "nodes", "gpus", "dap_size", "global_batch", "eval_ranks",
                    "preset", "step_s", "eval_s", "olympic_mean_min", "olympic_p05_min",
                    "olympic_p95_min", "memory_gib"])
        for pt in points:
            p = pt.prediction
            if p is None:
                w.writerow([pt.cluster, pt.nodes, pt.gpus, pt.dap_size] + [""] * 9)
                continue
            w.writerow([pt.cluster, pt.nodes, pt.gpus, pt.dap_size, p.shape.global_batch,
                        p.shape.eval_ranks, p.step.preset, f"{p.step.step_s:.4f}",
                        f"{p.eval_steady_s:.2f}", f"{p.stats.olympic_mean_s / 60:.3f}",
                        f"{p.stats.olympic_p05_s / 60:.3f}", f"{p.stats.olympic_p95_s / 60:.3f}",
                        f"{p.step.memory_gib:.1f}"])


def plot(points: list[SweepPoint], path: Path, target_min: float, title: str) -> None:
    """Predicted minutes against GPUs, one line per (node kind, DAP size)."""
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError("the sweep plot needs matplotlib: pip install 'scalefold[plot]'"
                           ) from None
    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    styles = {1: "o-", 2: "s-", 4: "^-", 8: "D-"}
    kinds = sorted({pt.cluster for pt in points})
    for kind, dash in zip(kinds, ("-", "--", ":", "-.")):
        for dap in sorted({pt.dap_size for pt in points}):
            row = [pt for pt in points if pt.cluster == kind and pt.dap_size == dap
                   and pt.prediction is not None]
            if row:
                ax.plot([pt.gpus for pt in row], [pt.minutes for pt in row],
                        styles.get(dap, "o-")[0], linestyle=dash, label=f"{kind}, DAP {dap}")
    ax.axhline(target_min, color="red", linewidth=1)
    ax.text(0.01, target_min * 1.02, f"{target_min} min (NVIDIA, MLPerf HPC v3.0)",
            color="red", fontsize=8, transform=ax.get_yaxis_transform())
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("GPUs")
    ax.set_ylabel("predicted time to train, olympic mean of 10 runs (min)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def default_options_for_sweep(options: PlanOptions) -> PlanOptions:
    """Fewer drawn results per point: the sweep predicts thousands of shapes."""
    return replace(options, trials=min(options.trials, 400))
