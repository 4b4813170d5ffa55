"""Figures of a published MLPerf result log, for checking the time line against it.

`log_figures` reads a log's own timings (its per-step time, its first block, its
evaluations) without looking at `run_stop`; `run_time` of those figures must then give
back the log's time to train. That checks the time line's structure (startup, warm-up,
evaluation stalls, the last evaluation), not the step-time model.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from scalefold.plan.timeline import RunFigures

PREFIX = ":::MLLOG "


@dataclass(frozen=True)
class PublishedRun:
    path: str
    gpus: int
    nodes: int
    global_batch: int
    steps: int  # training steps at the evaluation that reached the target
    time_to_train_s: float  # run_stop - run_start
    figures: RunFigures


def read_events(path: str | Path) -> list[dict]:
    events = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        i = line.find(PREFIX)
        if i < 0:
            continue
        try:
            events.append(json.loads(line[i + len(PREFIX):]))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not an MLLOG JSON line ({e})") from None
    if not events:
        raise ValueError(f"{path}: no :::MLLOG lines")
    return events


def _one(events: list[dict], key: str, path) -> dict:
    found = [e for e in events if e["key"] == key]
    if not found:
        raise ValueError(f"{path}: no '{key}' line")
    return found[0]


def log_figures(path: str | Path) -> PublishedRun:
    """A published log's figures: startup, steady step, first-block warm-up, hand-off and
    evaluation durations, and whether evaluation ran asynchronously (an evaluation that
    overlaps training)."""
    ev = read_events(path)
    t0 = _one(ev, "run_start", path)["time_ms"] / 1e3
    stop = _one(ev, "run_stop", path)["time_ms"] / 1e3
    batch = int(_one(ev, "global_batch_size", path)["value"])
    gpus = int(_one(ev, "number_of_ranks", path)["value"]) if any(
        e["key"] == "number_of_ranks" for e in ev) else 0
    nodes = int(_one(ev, "number_of_nodes", path)["value"])
    cadence = int(_one(ev, "val_every_iters", path)["value"])

    def times(key: str) -> dict[int, float]:
        return {int(e["metadata"]["epoch_num"]): e["time_ms"] / 1e3 - t0
                for e in ev if e["key"] == key}

    ep_start, ep_stop = times("epoch_start"), times("epoch_stop")
    ev_start, ev_stop = times("eval_start"), times("eval_stop")
    accuracy = {int(e["metadata"]["epoch_num"]): float(e["value"])
                for e in ev if e["key"] == "eval_accuracy"}
    target = float(_one(ev, "target_avg_lddt_ca_value", path)["value"])
    reached = sorted(s for s, a in accuracy.items() if a >= target)
    if not reached:
        raise ValueError(f"{path}: no evaluation reached the target {target}")
    steps = reached[0] // batch
    # Blocks are keyed by the samples at their end; the first starts at the first step.
    blocks = sorted(ep_stop)
    durations = [ep_stop[s] - ep_start[s] for s in blocks if s in ep_start]
    steady = statistics.median(durations[1:]) if len(durations) > 1 else durations[0]
    step_s = steady / cadence
    first = blocks[0]
    warmup_s = max(0.0, durations[0] - steady)
    startup_s = ep_start[first]
    evals = sorted(ev_start)
    eval_s = tuple(ev_stop[s] - ev_start[s] for s in evals if s in ev_stop)
    asynchronous = any(ev_start[s] < ep_stop.get(s + cadence * batch, -1) and
                       ev_start[s] > ep_start.get(s + cadence * batch, float("inf"))
                       for s in evals)
    if asynchronous:
        # Between a block's end and the next block's start the trainer hands over the
        # weights; the median over the steady blocks.
        gaps = [ep_start[b2] - ep_stop[b1] for b1, b2 in zip(blocks, blocks[1:])
                if b2 in ep_start and b1 != first]
        handoff = statistics.median(gaps) if gaps else 0.0
        at_start = 0 in ev_start
        fig = RunFigures(step_s=step_s, startup_s=startup_s, warmup_s=warmup_s,
                         eval_s=eval_s, asynchronous=True, async_queue=0, handoff_s=handoff,
                         eval_at_start=at_start,
                         first_eval_start_s=ev_start[0] if at_start else 0.0,
                         cadence=cadence)
    else:
        # Synchronous: a block's end to the next block's start is the evaluation.
        fig = RunFigures(step_s=step_s, startup_s=startup_s, warmup_s=warmup_s,
                         eval_s=tuple(ep_start[b2] - ep_stop[b1]
                                      for b1, b2 in zip(blocks, blocks[1:]) if b2 in ep_start)
                         or eval_s, asynchronous=False, cadence=cadence)
    return PublishedRun(str(path), gpus, nodes, batch, steps, stop - t0, fig)
