"""Steps to target from the installed mlperf-logging RCPs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scalefold.plan.rcp import (
    interpolated_checker_stats,
    load_reference_points,
    rcp_path,
    steps_on_grid,
    steps_to_target,
)


def test_reference_points_are_read_from_the_installed_package():
    import mlperf_logging

    assert rcp_path().startswith(mlperf_logging.__path__[0])
    points = load_reference_points()
    assert [p.global_batch for p in points] == [128, 256]
    assert all(len(p.samples) == 20 for p in points)
    # BENCHMARK_RULES.md: the reference means are 88,747 (batch 128) and 133,120 (256).
    assert round(points[0].olympic_mean) == 88747
    assert round(points[1].olympic_mean) == 133120


def test_reference_batch_gives_the_runs_as_steps_on_the_evaluation_grid():
    t = steps_to_target(256)
    assert len(t.steps) == 20 and all(s % 40 == 0 for s in t.steps)
    assert sorted(t.steps) == sorted(int(s) // 256 for s in t.samples)
    assert steps_on_grid(133_121, 256) == 560  # one sample past 520 steps: next evaluation


def test_interpolation_matches_the_checker_mean_and_lies_between():
    t = steps_to_target(192)
    mean, std = interpolated_checker_stats(192)
    assert t.olympic_mean_samples == pytest.approx(mean)
    assert mean == pytest.approx((88747.5 + 133120) / 2, rel=1e-4)
    assert std > 0
    lo, hi = steps_to_target(128), steps_to_target(256)
    assert np.mean(lo.samples) < np.mean(t.samples) < np.mean(hi.samples)
    assert "interpolated" in t.source


def test_batches_outside_the_reference_range_are_refused_unless_samples_given():
    for batch in (96, 512):
        with pytest.raises(ValueError, match="outside the reference convergence points"):
            steps_to_target(batch)
    t = steps_to_target(96, samples_to_target=107_520)
    assert t.steps == (1120,)


def test_a_custom_rcp_set_interpolates_its_own_runs(tmp_path):
    from scalefold.plan.rcp import ReferencePoint

    pts = (ReferencePoint(100, (1000, 2000, 3000)), ReferencePoint(300, (3000, 4000, 5000)))
    t = steps_to_target(200, pts)
    assert t.samples == (2000.0, 3000.0, 4000.0)
    json.dumps(t.samples)
