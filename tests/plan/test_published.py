"""The time line reproduces published logs from their own figures, and NVIDIA's result."""

from __future__ import annotations

from pathlib import Path

import pytest

from scalefold.plan.model import TARGET_TO_BEAT_MIN, result_stats
from scalefold.plan.published import log_figures
from scalefold.plan.rcp import steps_to_target
from scalefold.plan.timeline import RunFigures, run_time

LOGS = Path(__file__).resolve().parent / "data"  # published logs, source in its README
NVIDIA = LOGS / "nvidia_eos_n260_strong_result_0.txt"
TACC = LOGS / "tacc_lonestar6_strong_result_1.txt"


def test_nvidia_n260_log_figures_and_time():
    run = log_figures(NVIDIA)
    assert (run.nodes, run.gpus, run.global_batch, run.steps) == (260, 2080, 256, 560)
    assert run.time_to_train_s / 60 == pytest.approx(8.38, abs=0.01)
    f = run.figures
    assert f.asynchronous and f.eval_at_start
    # The step with the hand-off spread over a block: ~0.706 s; ~110 s to the first
    # boundary's release (startup, first block, the wait for the step-0 evaluation).
    assert f.step_s + f.handoff_s / 40 == pytest.approx(0.706, abs=0.01)
    model = run_time(run.steps, f)
    assert model.total_s == pytest.approx(run.time_to_train_s, rel=0.10)
    assert model.eval_stall_s > 40  # the first evaluation (99 s) held training back


def test_tacc_log_is_synchronous_and_reproduced():
    run = log_figures(TACC)
    assert not run.figures.asynchronous
    assert (run.gpus, run.global_batch, run.steps) == (96, 96, 1120)
    assert run.figures.step_s == pytest.approx(6.9, abs=0.1)
    model = run_time(run.steps, run.figures)
    assert model.total_s == pytest.approx(run.time_to_train_s, rel=0.10)
    assert model.eval_stall_s == pytest.approx(28 * 58, rel=0.05)  # 28 evaluations


def test_nvidia_figures_with_the_rcp_give_the_published_olympic_mean():
    stats = result_stats(steps_to_target(256), log_figures(NVIDIA).figures)
    assert stats.olympic_mean_s / 60 == pytest.approx(TARGET_TO_BEAT_MIN, rel=0.10)
    assert stats.olympic_p05_s <= stats.olympic_mean_s <= stats.olympic_p95_s
    assert stats.run_std_s > 0


def test_async_queue_depth_decides_when_a_slow_evaluation_stalls():
    # Evaluations of 30 s against 40 steps of 0.5 s = 20 s: they fall behind.
    fig = RunFigures(step_s=0.5, eval_s=(30.0,), asynchronous=True, async_queue=1)
    t1 = run_time(120, fig)
    t0 = run_time(120, RunFigures(step_s=0.5, eval_s=(30.0,), asynchronous=True,
                                  async_queue=0))
    assert t1.eval_stall_s < t0.eval_stall_s
    # Evaluations end-to-end: the last one reports 3 x 30 s after the first hand-off.
    assert t1.total_s == pytest.approx(20 + 90)
    fast = run_time(120, RunFigures(step_s=0.5, eval_s=(10.0,), asynchronous=True))
    assert fast.eval_stall_s == 0 and fast.total_s == pytest.approx(60 + 10)
    sync = run_time(120, RunFigures(step_s=0.5, eval_s=(10.0,)))
    assert sync.total_s == pytest.approx(60 + 30)
    with pytest.raises(ValueError, match="multiple of the evaluation cadence"):
        run_time(100, fig)
