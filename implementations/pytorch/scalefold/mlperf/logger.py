"""The benchmark's MLPerf logger: one object per process, passed to whoever logs.

It wraps :class:`mlperf_logging.mllog.MLLogger` around a private ``logging.Logger`` (not
registered in the logging module's tree, so two loggers in one process - tests, or a
trainer and an evaluator thread - never share handlers) and adds what ``mllog`` leaves to
the caller: typed values, the order the compliance rules impose, keys that may appear
once only, and a record of what has been written so a run can tell before ``run_stop``
whether its log will pass.

Only the writer rank should pass ``enabled=True``. Disabled loggers still validate every
input and keep the record, so a bug shows on every rank, not only on rank 0.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mlperf_logging.mllog import mllog

from . import keys as K
from .facts import (
    DatasetFacts,
    MLPerfLogError,
    RunFacts,
    SubmissionInfo,
    as_bool,
    as_float,
    as_int,
    as_str,
)

__all__ = ["MLPerfLogger"]

_THIS_FILE = __file__

# mllog's event types, spelled as the real v3.0 logs spell them per key (the reference and
# NVIDIA both log staging_start/stop as points in time, not as an interval).
_POINT = "point"
_START = "start"
_END = "end"


class MLPerfLogWriteError(OSError):
    """The MLPerf log could not be written: a run whose log is incomplete is no result,
    so the first failure stops it, naming the file and the cause."""


class _StrictFileHandler(logging.FileHandler):
    """A FileHandler that raises on a failed write (logging's default prints a
    "--- Logging error ---" block and carries on) and flushes every record to disk."""

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        if self.stream is not None:
            try:
                os.fsync(self.stream.fileno())
            except OSError:
                self.handleError(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's API
        exc = sys.exc_info()[1]
        cause = getattr(exc, "strerror", None) or exc
        raise MLPerfLogWriteError(f"cannot write the MLPerf log {self.baseFilename}: {cause}"
                                  ) from exc


class MLPerfLogger:
    """Writes ``:::MLLOG`` lines for one run.

    Args:
        path: log file (created with its parent folder; truncated unless ``append``).
            ``None`` writes no file.
        enabled: whether this process writes at all (the writer rank: rank 0, or the
            evaluation leader when evaluation runs on separate ranks).
        stdout: also print the lines on stdout (Slurm captures them in the job log).
        instance: the ``instance`` metadata of epoch/eval/staging/stats events; the
            reference writes ``0`` for a strong-scaling run; ``None`` omits it.
        root_dir: prefix trimmed from the ``file`` metadata (the call site).
        clock: seconds since the epoch; injectable so tests can write a log whose
            durations are those of a real run.
    """

    def __init__(
        self,
        path: str | Path | None,
        *,
        enabled: bool,
        stdout: bool = False,
        instance: int | None = None,
        root_dir: str | None = None,
        clock: Callable[[], float] = time.time,
        append: bool = False,
    ) -> None:
        self.enabled = bool(enabled)
        self.path = Path(path) if path is not None else None
        self.instance = None if instance is None else as_int("instance", instance, 0)
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._division: str | None = None
        self._target: float | None = None
        self._best_accuracy: float | None = None
        self._handlers: list[logging.Handler] = []

        # A private Logger instance (not logging.getLogger) keeps no process-wide state.
        self._pylogger = logging.Logger(f"scalefold.mlperf.{id(self):x}", level=logging.INFO)
        self._pylogger.propagate = False
        if self.enabled:
            fmt = logging.Formatter("%(message)s")
            if self.path is not None:
                try:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    if not append:
                        self.path.write_bytes(b"")  # a new log: emptied once
                    # Always O_APPEND: with asynchronous evaluation a second process (the
                    # evaluation leader) appends to the same file, and a writer at its own
                    # offset would overwrite those lines.
                    handler: logging.Handler = _StrictFileHandler(
                        self.path, mode="a", encoding="utf-8"
                    )
                except OSError as exc:
                    raise MLPerfLogWriteError(
                        f"cannot open the MLPerf log {self.path}: {exc.strerror or exc}"
                    ) from exc
                handler.setFormatter(fmt)
                self._handlers.append(handler)
            if stdout:
                handler = logging.StreamHandler(sys.stdout)
                handler.setFormatter(fmt)
                self._handlers.append(handler)
        for handler in self._handlers:
            self._pylogger.addHandler(handler)
        self._mllog = mllog.MLLogger(logger=self._pylogger, root_dir=root_dir)

    # --- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        for handler in self._handlers:
            try:
                handler.flush()
            except OSError:
                pass  # a failed write already stopped the run with its error
            self._pylogger.removeHandler(handler)
            try:
                handler.close()  # closes the file; a StreamHandler leaves sys.stdout open
            except OSError:
                pass
        self._handlers.clear()

    def __enter__(self) -> MLPerfLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- submission and configuration ---------------------------------------------------

    def log_submission(self, info: SubmissionInfo) -> None:
        """``submission_*``, ``number_of_nodes``, ``accelerators_per_node``."""
        if not isinstance(info, SubmissionInfo):
            raise MLPerfLogError("log_submission expects a SubmissionInfo")
        self._division = info.division
        for key, value in info.log_items():
            self._emit(_POINT, key, value)

    def log_run_facts(self, facts: RunFacts) -> None:
        """Every hyper-parameter and fixed value of the benchmark, in the reference's order."""
        if not isinstance(facts, RunFacts):
            raise MLPerfLogError("log_run_facts expects a RunFacts")
        self._target = facts.target_avg_lddt_ca_value
        for key, value in facts.log_items():
            self._emit(_POINT, key, value)

    def log_dataset(self, facts: DatasetFacts) -> None:
        """``train_samples`` and ``eval_samples``: the sizes of the datasets really used."""
        if not isinstance(facts, DatasetFacts):
            raise MLPerfLogError("log_dataset expects a DatasetFacts")
        for key, value in facts.log_items():
            self._emit(_POINT, key, value)

    def cache_clear(self, cleared: bool) -> None:
        """Whether the file-system caches were dropped before this run."""
        self._emit(_POINT, K.CACHE_CLEAR, as_bool("cache_clear", cleared))

    # --- timed regions -----------------------------------------------------------------

    def init_start(self) -> None:
        if self._counts[K.RUN_START]:
            raise MLPerfLogError("init_start after run_start")
        self._emit(_START, K.INIT_START)

    def init_stop(self) -> None:
        if not self._counts[K.INIT_START]:
            raise MLPerfLogError("init_stop before init_start")
        self._emit(_END, K.INIT_STOP)

    def run_start(self) -> None:
        if not self._counts[K.INIT_STOP]:
            raise MLPerfLogError("run_start before init_stop")
        self._emit(_START, K.RUN_START)

    def join_run(self) -> None:
        """Continue a run another process opened (the evaluation leader of asynchronous
        evaluation writes eval_* and run_stop into the log the training leader started):
        records init and run_start as done without writing them again."""
        with self._lock:
            for key in (K.INIT_START, K.INIT_STOP, K.RUN_START):
                self._counts[key] = max(1, self._counts[key])

    def run_stop(self, status: str) -> None:
        """End of the timed run; ``status`` is "success" (target reached) or "aborted"."""
        if status not in K.RUN_STOP_STATUSES:
            raise MLPerfLogError(f"run_stop status must be one of {K.RUN_STOP_STATUSES}")
        if not self._counts[K.RUN_START]:
            raise MLPerfLogError("run_stop before run_start")
        self._emit(_END, K.RUN_STOP, metadata={K.STATUS: status})

    def staging_start(self) -> None:
        self._emit(_POINT, K.STAGING_START)

    def staging_stop(self, duration_s: float | None = None) -> None:
        if not self._counts[K.STAGING_START]:
            raise MLPerfLogError("staging_stop before staging_start")
        meta = (
            {} if duration_s is None else {"staging_duration": as_float("duration_s", duration_s)}
        )
        self._emit(_POINT, K.STAGING_STOP, metadata=self._with_instance(meta))

    # --- training cycles and evaluation --------------------------------------------------
    # `epoch_num` is the number of training samples seen (iterations x global batch), as
    # the reference logs it and as the RCP checker reads it from eval_accuracy. For one
    # cycle of `val_every_iters` steps, the reference logs epoch_start/epoch_stop with the
    # count reached at the end of the cycle, and eval_* with the count of the weights
    # evaluated.

    def epoch_start(self, epoch_num: int) -> None:
        self._epoch_event(_START, K.EPOCH_START, epoch_num)

    def epoch_stop(self, epoch_num: int) -> None:
        self._epoch_event(_END, K.EPOCH_STOP, epoch_num)

    def eval_start(self, epoch_num: int) -> None:
        self._epoch_event(_START, K.EVAL_START, epoch_num)

    def eval_accuracy(self, value: float, epoch_num: int) -> None:
        """Mean lDDT-Ca over the validation set of the weights seen after `epoch_num` samples."""
        acc = as_float("eval_accuracy", value)
        if not 0.0 <= acc <= 1.0:
            raise MLPerfLogError(f"eval_accuracy must lie in [0, 1], got {acc}")
        self._best_accuracy = acc if self._best_accuracy is None else max(self._best_accuracy, acc)
        self._epoch_event(_POINT, K.EVAL_ACCURACY, epoch_num, value=acc)

    def eval_stop(self, epoch_num: int) -> None:
        self._epoch_event(_END, K.EVAL_STOP, epoch_num)

    def tracked_stats(self, step: int, stats: Mapping[str, float]) -> None:
        """Per-cycle statistics, e.g. ``{"throughput": samples_per_second}``.

        ``step`` is the cycle's index (the reference counts evaluation cycles from 1;
        staging statistics use step 0).
        """
        if not stats:
            raise MLPerfLogError("tracked_stats needs at least one statistic")
        value = {
            as_str("stat name", k): as_float(f"tracked_stats[{k}]", v) for k, v in stats.items()
        }
        meta = self._with_instance({K.STEP: as_int("step", step, 0)})
        self._emit(_POINT, K.TRACKED_STATS, value, metadata=meta)

    def throughput(self, step: int, samples_per_second: float) -> None:
        """``tracked_stats`` with the training throughput of one cycle, as the reference logs it."""
        value = {"throughput": as_float("samples_per_second", samples_per_second)}
        meta = self._with_instance({K.STEP: as_int("step", step, 0)})
        self._emit(_POINT, K.TRACKED_STATS, value, metadata=meta)

    def event(self, key: str, value: Any = None, metadata: Mapping[str, Any] | None = None) -> None:
        """A point-in-time line for a key outside the benchmark's list (notes, extra stats).

        Keys the benchmark defines must go through their typed methods.
        """
        as_str("key", key)
        if key in K.VALUE_KINDS:
            raise MLPerfLogError(f"{key!r} has a dedicated method; use it so its type is checked")
        self._emit(_POINT, key, value, metadata=dict(metadata or {}))

    # --- what has been written ---------------------------------------------------------

    @property
    def division(self) -> str | None:
        return self._division

    def count(self, key: str) -> int:
        return self._counts[key]

    def problems(self) -> list[str]:
        """Why the log written so far would fail the rules (empty when it would pass).

        Checks presence and counts of the required keys for the logged division and that
        some evaluation reached the logged target; values are the checker's business.
        """
        if self._division is None:
            return ["submission info not logged (log_submission)"]
        out = []
        for key in K.required_once(self._division):
            n = self._counts[key]
            if n != 1:
                out.append(f"{key}: logged {n} times, required exactly once")
        for key in K.required_at_least_once(self._division):
            if not self._counts[key]:
                out.append(f"{key}: never logged, required at least once")
        if self._target is not None and (
            self._best_accuracy is None or self._best_accuracy < self._target
        ):
            out.append(f"no eval_accuracy reached the target {self._target}")
        return out

    # --- internals -----------------------------------------------------------------------

    def _with_instance(self, meta: dict[str, Any]) -> dict[str, Any]:
        if self.instance is not None:
            meta[K.INSTANCE] = self.instance
        return meta

    def _epoch_event(self, kind: str, key: str, epoch_num: int, value: Any = None) -> None:
        if not self._counts[K.RUN_START]:
            raise MLPerfLogError(f"{key} before run_start")
        meta = self._with_instance({K.EPOCH_NUM: as_int("epoch_num", epoch_num, 0)})
        self._emit(kind, key, value, metadata=meta)

    def _emit(
        self, kind: str, key: str, value: Any = None, metadata: dict[str, Any] | None = None
    ) -> None:
        with self._lock:
            if key in K.ONCE_KEYS and self._counts[key]:
                raise MLPerfLogError(f"{key} may be logged only once")
            self._counts[key] += 1
            if not self.enabled:
                return
            # mllog records the call site (file, lineno): point it at the first frame outside
            # this module, i.e. the training code, so the seed checker sees where it was set.
            frame = inspect.currentframe()
            depth = 0
            while frame is not None and frame.f_code.co_filename == _THIS_FILE:
                frame = frame.f_back
                depth += 1
            del frame
            # mllog's get_caller skips itself, _log_helper and `stack_offset` more frames; the
            # mllog method called below is one of those, the `depth` frames of ours the rest.
            kwargs = {
                "value": value,
                "metadata": metadata or None,
                "time_ms": int(round(self._clock() * 1000.0)),
                "stack_offset": depth + 1,
            }
            if kind == _START:
                self._mllog.start(key, **kwargs)
            elif kind == _END:
                self._mllog.end(key, **kwargs)
            else:
                self._mllog.event(key, **kwargs)
