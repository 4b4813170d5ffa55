"""scalefold.train.run: what the MLPerf run says of itself."""

from __future__ import annotations

from scalefold.mlperf.facts import INIT_LIMIT_S
from scalefold.train.run import init_report


def test_init_report_warns_at_the_rules_limit_only():
    assert init_report(240.0) == "initialisation 4.0 min (the rules allow under 30)"
    assert "WARNING" not in init_report(INIT_LIMIT_S - 1.0)
    over = init_report(INIT_LIMIT_S)
    assert over.startswith("initialisation 30.0 min: WARNING: the rules allow under 30 min")
    assert "compliance/check.py will reject this run" in over
