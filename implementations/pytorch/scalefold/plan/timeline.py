"""Time to train of one run, from its per-step and per-evaluation figures.

A run is `startup_s` (run_start to the first training step: dataset indexing, the
loader's first batch), then blocks of `cadence` steps, each followed by an evaluation of
the SWA weights; it stops when the evaluation of the last step reports the target.

- Synchronous evaluation: the trainers evaluate at each boundary and wait for it.
- Asynchronous evaluation: separate ranks evaluate while training goes on. At a boundary
  the trainer hands the weights over (`handoff_s`) and continues, unless the evaluation
  ranks are still behind: with `async_queue=1` (this package: the NCCL send of the new
  weights completes once the evaluation ranks have received the previous ones) the
  trainer waits until the previous evaluation has *started*; with `async_queue=0`
  (NVIDIA's v3.0 run, as its log shows at its first boundary) until it has *finished*.
  An evaluation starts when its weights arrive and the previous one is done.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunFigures:
    """Per-run timings that the time line needs; all seconds."""

    step_s: float  # steady training step, everything included
    startup_s: float = 0.0  # run_start -> first training step
    warmup_s: float = 0.0  # extra time of the first steps over `step_s`
    eval_s: tuple[float, ...] = (0.0,)  # evaluations in order; the last value repeats
    asynchronous: bool = False
    async_queue: int = 1
    handoff_s: float = 0.0  # trainer's cost at each boundary (async: the weights' send)
    eval_at_start: bool = False  # the initial weights are evaluated too (async only)
    first_eval_start_s: float = 0.0  # when that evaluation starts, after run_start
    cadence: int = 40

    def __post_init__(self) -> None:
        if self.step_s <= 0:
            raise ValueError(f"step time must be > 0, got {self.step_s}")
        if not self.eval_s or min(self.eval_s) < 0:
            raise ValueError(f"evaluation times must be >= 0, got {self.eval_s}")
        if self.async_queue not in (0, 1):
            raise ValueError(f"async_queue must be 0 or 1, got {self.async_queue}")
        if self.cadence < 1:
            raise ValueError(f"cadence must be >= 1, got {self.cadence}")
        if self.eval_at_start and not self.asynchronous:
            raise ValueError("an evaluation of the initial weights is modelled only for "
                             "asynchronous evaluation")

    def eval_duration(self, k: int) -> float:
        return self.eval_s[min(k, len(self.eval_s) - 1)]


@dataclass(frozen=True)
class RunTime:
    """One run's time to train and where it goes (seconds)."""

    steps: int
    startup_s: float
    steps_s: float  # steps x steady step time
    warmup_s: float
    handoff_s: float
    eval_stall_s: float  # training waiting for evaluation (synchronous: all of it)
    last_eval_s: float  # async: from the last step's hand-off to its evaluation's report
    total_s: float

    def parts(self) -> dict[str, float]:
        return {"startup (timed)": self.startup_s, "training steps": self.steps_s,
                "first-steps warm-up": self.warmup_s, "evaluation hand-offs": self.handoff_s,
                "evaluation stalls": self.eval_stall_s,
                "last evaluation (async)": self.last_eval_s}


def run_time(steps: int, fig: RunFigures) -> RunTime:
    """Time to train of a run that reaches the target at the evaluation after `steps`."""
    if steps < fig.cadence or steps % fig.cadence:
        raise ValueError(f"steps to target must be a positive multiple of the evaluation "
                         f"cadence {fig.cadence}, got {steps}")
    blocks = steps // fig.cadence
    block_s = fig.cadence * fig.step_s
    t = fig.startup_s
    stall = 0.0
    if not fig.asynchronous:
        for k in range(blocks):
            t += block_s + (fig.warmup_s if k == 0 else 0.0)
            d = fig.eval_duration(k)
            stall += d
            t += d
        return RunTime(steps, fig.startup_s, steps * fig.step_s, fig.warmup_s, 0.0, stall,
                       0.0, t)
    # Asynchronous: (start, end) of the evaluation before the one being handed over.
    prev: tuple[float, float] | None = None
    k_eval = 0
    if fig.eval_at_start:
        d = fig.eval_duration(0)
        prev = (fig.first_eval_start_s, fig.first_eval_start_s + d)
        k_eval = 1
    end = t
    handoffs = 0.0
    last_handoff_at = t
    for k in range(blocks):
        t += block_s + (fig.warmup_s if k == 0 else 0.0)
        if prev is not None:
            gate = prev[1] if fig.async_queue == 0 else prev[0]
            if gate > t:
                stall += gate - t
                t = gate
        last_handoff_at = t
        t += fig.handoff_s
        handoffs += fig.handoff_s
        start = max(t, prev[1]) if prev is not None else t
        end = start + fig.eval_duration(k_eval)
        k_eval += 1
        prev = (start, end)
    last_eval = end - last_handoff_at - fig.handoff_s
    total = end
    return RunTime(steps, fig.startup_s, steps * fig.step_s, fig.warmup_s,
                   handoffs, stall, last_eval, total)
