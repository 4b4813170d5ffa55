"""What the kernel benches (`bench attention`, `bench layernorm`) share: one recorded
training forward of a preset, graph-replay timing of one call, and the report."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import torch
from torch import nn


def recorded_forward(preset: str, device: torch.device, seed: int,
                     instrument: Callable[[nn.Module], None], n_res: int | None = None) -> None:
    """Build the preset's model with the Triton kernels (bf16, bf16 LayerNorm outputs),
    let `instrument` patch it, and run one forward on a synthetic batch of the preset's
    shapes (`n_res` residues instead of its crop: e.g. an evaluation chain's length).

    Activation checkpointing keeps that forward small; the calls are the same.
    """
    from scalefold.bench.step import PRESET_SHAPES, StepRunner, _slice, parse_variant, step_config
    from scalefold.model import AlphaFoldConfig
    from scalefold.utils.synthetic import synthetic_batch

    shapes = PRESET_SHAPES[preset]
    variant = parse_variant("eager@bf16+attention=triton+layer_norm=triton"
                            "+layer_norm_output=compute")
    model_cfg = getattr(AlphaFoldConfig, preset)()
    runner = StepRunner(step_config(preset, variant, seed, activation_checkpointing=True),
                        device)
    instrument(runner.model)
    batch = synthetic_batch(model_cfg, n_res or shapes.n_res, shapes.n_clust, shapes.n_extra,
                            shapes.n_templ, num_iterations=1, seed=seed, device=device)
    with runner.built.autocast():
        runner.model(_slice(batch, 0))


def time_call(fn, warmup: int, reps: int, device: torch.device) -> float:
    """Seconds of one fn() on the device.

    On CUDA the call is captured once as a CUDA graph and the graph is replayed `reps`
    times between two events (median of 3 such runs): the host's launch overhead, which
    at 0.1-0.3 ms per call is as large as the kernels, stays out of the number. Where
    capture fails, back-to-back calls are timed instead. On CPU: median wall time.
    """
    for _ in range(warmup):
        fn()
    if device.type != "cuda":
        out = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
        return statistics.median(out)
    torch.cuda.synchronize(device)
    run = fn
    # Two attempts. In an H200 sweep (docs/perf-log/2026-11-29_s6.md) the first backward
    # measured 0.768 ms and the same launch 0.398 ms a minute later, as if timed eagerly;
    # a failed first capture of the process (not confirmed) would do that.
    for _ in range(2):
        try:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                fn()
            run = graph.replay
            break
        except Exception:  # noqa: BLE001 - not capturable: time the eager calls
            torch.cuda.synchronize(device)
    out = []
    for _ in range(3):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(reps):
            run()
        b.record()
        b.synchronize()
        out.append(a.elapsed_time(b) / 1e3 / reps)
    return statistics.median(out)


def print_and_dump(table: str, cfg: Any, results: list[Any], json_path: str | None) -> None:
    """Print the table; write config, torch version and results (dataclasses) as JSON."""
    print(table)
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"config": asdict(cfg), "torch": torch.__version__,
                       "results": [asdict(r) for r in results]}, f, indent=1)
