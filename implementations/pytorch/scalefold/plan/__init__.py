"""`scalefold plan`: predicted time to train on a cluster from measured pieces.

    from scalefold.plan import load_cluster, load_profile, predict, RunShape
    p = predict(load_cluster("dgxh100", nodes=260), RunShape(256, dap_size=8,
                eval_ranks=32), load_profile())
    p.stats.olympic_mean_s, p.step_parts(), p.mean_parts(), p.warnings

Model, schema and assumptions: docs/PLAN.md.
"""

from scalefold.plan.config import Cluster, RunShape, load_cluster
from scalefold.plan.model import PlanOptions, Prediction, predict, result_stats
from scalefold.plan.profile import Profile, load_profile
from scalefold.plan.published import log_figures
from scalefold.plan.rcp import load_reference_points, steps_to_target
from scalefold.plan.timeline import RunFigures, run_time

__all__ = [
    "Cluster", "PlanOptions", "Prediction", "Profile", "RunFigures", "RunShape",
    "load_cluster", "load_profile", "load_reference_points", "log_figures", "predict",
    "result_stats", "run_time", "steps_to_target",
]
