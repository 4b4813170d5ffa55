"""`scalefold bench train` on the CPU: the real trainer at the tiny preset, timed."""

from __future__ import annotations

import json

import pytest

from scalefold.bench.train import _Recorder, format_report, summarise
from scalefold.cli import ensure_mini_dataset, main
from scalefold.train.trainer import StepResult


def test_bench_train_tiny_cpu(tmp_path, capsys):
    data = ensure_mini_dataset(tmp_path / "mini")
    out = tmp_path / "train.json"
    rc = main(["bench", "train", "--data-dir", str(data), "--preset", "tiny",
               "--device", "cpu", "--crop-size", "24", "--max-msa-clusters", "6",
               "--max-extra-msa", "8", "--max-templates", "2", "--num-recycling-iters", "1",
               "--num-train-iters", "10", "--val-every-iters", "5",
               "--checkpoint-every-iters", "5", "--val-chain-ids", "3pwp_C",
               "--num-workers", "1", "--warmup", "1", "--output-dir", str(tmp_path / "run"),
               "--compare-step", "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "steady state, s per step:" in text and "data-loader wait per step" in text
    assert "evaluation at step 5" in text and "evaluation at step 10" in text
    assert "bench step" in text and "the trainer's step is" in text
    res = json.loads(out.read_text())
    assert res["train"]["steps"] == 10
    assert set(res["train"]["medians"]) <= {"0", "1"} and res["train"]["avg_s"] > 0
    assert [e["iteration"] for e in res["train"]["evals"]] == [5, 10]
    assert res["bench_step_avg_s"] > 0


def _step(it: int, n: int, done_at: float, wait: float = 0.0) -> StepResult:
    return StepResult(iteration=it, loss=1.0, terms={}, num_recycling=n, seconds=0.1,
                      data_wait_s=wait, done_at=done_at,
                      launch_s={"copies": 0.001 * it, "step": 0.01, "results": 0.0})


def test_summary_leaves_out_warmup_and_intervals_across_evaluations():
    rec = _Recorder()
    rec.t0 = 0.0
    # steps 1..6 one second apart, an evaluation after step 3 taking 5 s
    times = {1: 10.0, 2: 11.0, 3: 12.0, 4: 18.5, 5: 19.5, 6: 20.5}
    for it in range(1, 7):
        rec.steps.append(_step(it, it % 2, times[it], wait=0.01 * it))
        if it == 3:
            rec.breaks += [(3, "cycle_stop", 12.0), (3, "eval_start", 12.1),
                           (3, "eval_stop", 17.1)]
    assert summarise(rec, warmup=1, checkpoint_every=0).per_n  # 0: no checkpoints
    res = summarise(rec, warmup=1, checkpoint_every=100)
    assert res.startup_s == 10.0
    # interval 3->4 spans the evaluation; 1->2 is warm-up
    assert res.per_n == {1: [1.0, 1.0], 0: [1.0]}  # steps 3, 5 (n=1) and 6 (n=0)
    assert res.avg_s == 1.0
    (ev,) = res.evals
    assert ev["iteration"] == 3
    assert ev["seconds"] == pytest.approx(5.0) and ev["stall_s"] == pytest.approx(0.5)
    assert res.data_wait_s == [0.02, 0.03, 0.04, 0.05, 0.06]
    # every step, in order, for reading the timeline afterwards
    assert [(t["iteration"], t["n"], t["results_at"]) for t in res.timeline] == [
        (it, it % 2, times[it]) for it in range(1, 7)]
    assert res.timeline[2]["data_wait_s"] == pytest.approx(0.03)
    assert res.timeline[2]["launched_at"] == pytest.approx(12.0 - 0.1)  # results - seconds
    # the host's launch time by part: medians over the steady steps 2..6
    assert res.timeline[2]["launch_s"]["copies"] == pytest.approx(0.003)
    assert res.launch_s == pytest.approx({"copies": 0.004, "results": 0.0, "step": 0.01})
    assert "copies 4.0 ms, results 0.0 ms, step 10.0 ms" in format_report(res, "x")


def test_device_times_are_summarised_by_recycling_count():
    """The steps' CUDA-event times (None on a CPU) give their own per-n medians, not
    moved between neighbouring steps as the host intervals are; the GPU's time between
    steps is the mean of the steady steps' own idle times, none spanning an evaluation."""
    rec = _Recorder()
    rec.t0 = 0.0
    for it in range(1, 9):
        step = _step(it, it % 2, float(it))
        step.device_s = 0.4 if it % 2 == 0 else 0.5
        step.idle_before_s = None if it == 1 else 0.001 * it
        rec.steps.append(step)
        if it == 5:
            rec.breaks += [(5, "cycle_stop", 5.0)]
    res = summarise(rec, warmup=2, checkpoint_every=0)
    assert res.device_per_n == {1: [0.5, 0.5], 0: [0.4, 0.4, 0.4]}  # steps 4..8
    assert res.device_avg_s == pytest.approx(0.45)
    # steps 4, 5, 7, 8: step 6 follows the cycle's end (its idle time spans the evaluation)
    assert res.idle_s == pytest.approx([0.004, 0.005, 0.007, 0.008])
    assert res.host_gap_s == pytest.approx(0.006)
    text = format_report(res, "x")
    assert "device time per step (CUDA events): n=0 0.4000, n=1 0.5000" in text
    assert ("the GPU between steps (the batch's copy, waits for host and loader) 6.0 ms a "
            "step on average, max 8.0 ms (1.3% of the device step)") in text
    cpu = _Recorder()
    cpu.steps = [_step(it, 0, float(it)) for it in range(1, 5)]
    assert summarise(cpu, warmup=1, checkpoint_every=0).device_avg_s is None
    assert summarise(cpu, warmup=1, checkpoint_every=0).host_gap_s is None
