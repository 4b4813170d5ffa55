"""The step's GPU timeline: kernel time against the time between kernels."""

from __future__ import annotations

import pytest

from scalefold.bench.timeline import LONG_GAP_US, format_timeline, timeline
from scalefold.cli import main


def test_timeline_splits_the_span_into_busy_and_idle():
    # a [0, 10], b [12, 20] (gap 2), c [30, 35] (gap 10: long), d [31, 33] inside c
    events = [("a", 0.0, 10.0), ("c", 30.0, 35.0), ("b", 12.0, 20.0), ("d", 31.0, 33.0)]
    t = timeline(events)
    assert t.kernels == 4
    assert t.span_ms == pytest.approx(0.035)
    assert t.busy_ms == pytest.approx((10 + 8 + 5) / 1e3)
    assert t.idle_ms == pytest.approx(12 / 1e3)
    assert t.kernel_ms == pytest.approx((10 + 8 + 5 + 2) / 1e3)
    assert sorted(t.gaps_us) == [0.0, 2.0, 10.0]
    # only the gap over LONG_GAP_US is attributed, to the kernel that ran before it
    assert 2.0 < LONG_GAP_US < 10.0
    assert t.long_gap_before == (("b", 1, pytest.approx(0.010)),)
    # and to the pair it falls between: what ran after it is what waited
    assert t.long_gap_pairs == (("b", "c", 1, pytest.approx(0.010)),)
    text = format_timeline(t, "x")
    assert "4 kernels" in text and "idle 0.01 ms" in text and "1 over 5 µs" in text
    assert "b\n      -> c" in text


def test_timeline_pairs_count_each_kind_of_gap():
    # x -> y twice with long gaps, x -> z once; the pairs are ranked by their total gap
    events = [("x", 0, 1), ("y", 21, 22), ("x", 30, 31), ("y", 51, 52), ("x", 60, 61),
              ("z", 70, 71)]
    t = timeline(events)
    assert t.long_gap_pairs == (("x", "y", 2, pytest.approx(0.040)),
                                ("y", "x", 2, pytest.approx(0.016)),
                                ("x", "z", 1, pytest.approx(0.009)))


def test_timeline_without_kernels_says_so():
    t = timeline([])
    assert t.kernels == 0
    assert "no kernel" in format_timeline(t, "n=0")


def test_bench_step_timeline_on_a_cpu(capsys):
    """The flag runs through `bench step`; a CPU has no device kernels to place."""
    rc = main(["bench", "step", "--preset", "tiny", "--device", "cpu", "--variants", "eager",
               "--recycles", "0,1", "--warmup", "0", "--steps", "1", "--no-flops",
               "--timeline"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "eager n=0 step as run: the profiler saw no kernel" in out
    assert "eager n=1 step as run" in out
