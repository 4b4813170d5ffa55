"""Log keys of the MLPerf HPC v3.0 OpenFold benchmark: which are required, and their types.

These are the *names* of the protocol (what the ``hpc_3.0.0`` compliance rules look for),
not values; values always come from the caller.
"""

from __future__ import annotations

from .facts import DatasetFacts, RunFacts, SubmissionInfo, fact_kinds

# Interval and point events that carry no value of their own.
INIT_START = "init_start"
INIT_STOP = "init_stop"
RUN_START = "run_start"
RUN_STOP = "run_stop"
STAGING_START = "staging_start"
STAGING_STOP = "staging_stop"
CACHE_CLEAR = "cache_clear"
EPOCH_START = "epoch_start"
EPOCH_STOP = "epoch_stop"
EVAL_START = "eval_start"
EVAL_STOP = "eval_stop"
EVAL_ACCURACY = "eval_accuracy"
TRACKED_STATS = "tracked_stats"

EPOCH_NUM = "epoch_num"
STATUS = "status"
STEP = "step"
INSTANCE = "instance"

RUN_STOP_STATUSES = ("success", "aborted")

SUBMISSION_KINDS = fact_kinds(SubmissionInfo)
RUN_FACT_KINDS = fact_kinds(RunFacts)
DATASET_KINDS = fact_kinds(DatasetFacts)

# kind of the `value` field for every key this package writes; "none" = null value,
# "stats" = a dict of finite numbers.
VALUE_KINDS: dict[str, str] = {
    **SUBMISSION_KINDS,
    **RUN_FACT_KINDS,
    **DATASET_KINDS,
    CACHE_CLEAR: "bool",
    EVAL_ACCURACY: "float",
    TRACKED_STATS: "stats",
    **{
        k: "none"
        for k in (
            INIT_START,
            INIT_STOP,
            RUN_START,
            RUN_STOP,
            STAGING_START,
            STAGING_STOP,
            EPOCH_START,
            EPOCH_STOP,
            EVAL_START,
            EVAL_STOP,
        )
    },
}

# Events that carry `epoch_num` (training samples seen) in their metadata.
EPOCH_EVENTS = (EPOCH_START, EPOCH_STOP, EVAL_START, EVAL_ACCURACY, EVAL_STOP)

# Keys the package's logger refuses to write twice: the rules (or the result tools,
# which read the first occurrence) expect each exactly once.
ONCE_KEYS = frozenset(
    set(SUBMISSION_KINDS)
    | set(RUN_FACT_KINDS)
    | set(DATASET_KINDS)
    | {INIT_START, INIT_STOP, RUN_START, RUN_STOP, STAGING_START, STAGING_STOP}
)

# Required in every division (BENCHMARK_RULES.md, "Logging"), each exactly once ...
COMMON_ONCE = (
    *SUBMISSION_KINDS,
    "global_batch_size",
    INIT_STOP,
    RUN_START,
    RUN_STOP,
    *DATASET_KINDS,
)
# ... and these at least once.
COMMON_AT_LEAST_ONCE = (
    CACHE_CLEAR,
    INIT_START,
    EPOCH_START,
    EPOCH_STOP,
    EVAL_START,
    EVAL_STOP,
    EVAL_ACCURACY,
)
# The closed division adds every hyper-parameter and fixed value, once.
CLOSED_ONCE = tuple(k for k in RUN_FACT_KINDS if k not in COMMON_ONCE)


def required_once(division: str) -> tuple[str, ...]:
    return COMMON_ONCE + (CLOSED_ONCE if division == "closed" else ())


def required_at_least_once(division: str) -> tuple[str, ...]:
    del division  # the same in both divisions; kept for a symmetric call site
    return COMMON_AT_LEAST_ONCE
