"""MLPerf HPC v3.0 OpenFold logging: a typed logger over ``mlperf_logging.mllog``.

The training loop builds one :class:`MLPerfLogger` (``enabled`` on the writer rank only),
fills :class:`SubmissionInfo`, :class:`RunFacts` and :class:`DatasetFacts` from the run,
and calls the event methods; :func:`validate_log` and :func:`run_compliance_checker`
check the result. See docs/MLPERF.md.
"""

from .facts import (
    DatasetFacts,
    MLPerfLogError,
    RunFacts,
    SubmissionInfo,
    count_parameters,
    sha256_of_file,
)
from .logger import MLPerfLogger
from .validate import CheckerResult, LogLine, parse_log, run_compliance_checker, validate_log

__all__ = [
    "CheckerResult",
    "DatasetFacts",
    "LogLine",
    "MLPerfLogError",
    "MLPerfLogger",
    "RunFacts",
    "SubmissionInfo",
    "count_parameters",
    "parse_log",
    "run_compliance_checker",
    "sha256_of_file",
    "validate_log",
]
