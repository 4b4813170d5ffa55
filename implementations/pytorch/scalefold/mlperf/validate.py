"""Checks of a finished log: this package's own (types, presence) and the official checker.

The official ``hpc_3.0.0`` rules compare values with ``==``, so they accept ``1`` for
``true`` and never look at the type of ``eval_accuracy`` or of ``epoch_num``; the rules of
this benchmark say types matter, hence :func:`validate_log`, which checks every line this
package knows against the type contract the typed facts enforce when writing.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import keys as K
from .facts import MLPerfLogError, as_date, as_sha256

__all__ = ["CheckerResult", "LogLine", "parse_log", "run_compliance_checker", "validate_log"]

TOKEN = ":::MLLOG "
USAGE = "hpc"
RULESET = "3.0.0"


@dataclass(frozen=True)
class LogLine:
    lineno: int
    time_ms: float
    event_type: str
    key: str
    value: Any
    metadata: dict[str, Any]


def parse_log(path: str | Path) -> list[LogLine]:
    """The ``:::MLLOG`` lines of a file; anything before the token (``srun -l`` prefixes,
    other output) is ignored, as the official parser does."""
    out = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for lineno, text in enumerate(handle, start=1):
            at = text.find(TOKEN)
            if at < 0:
                continue
            try:
                obj = json.loads(text[at + len(TOKEN) :])
            except json.JSONDecodeError as exc:
                raise MLPerfLogError(f"line {lineno}: not JSON after {TOKEN!r}: {exc}") from exc
            out.append(
                LogLine(
                    lineno=lineno,
                    time_ms=float(obj["time_ms"]),
                    event_type=obj.get("event_type", ""),
                    key=obj["key"],
                    value=obj.get("value"),
                    metadata=obj.get("metadata") or {},
                )
            )
    return out


def _kind_ok(kind: str, value: Any) -> bool:
    if kind == "none":
        return value is None
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return (
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        )
    if kind == "str":
        return isinstance(value, str) and bool(value.strip())
    if kind in ("date", "sha256"):
        try:
            (as_date if kind == "date" else as_sha256)("value", value)
        except MLPerfLogError:
            return False
        return True
    if kind == "stats":
        return (
            isinstance(value, dict)
            and bool(value)
            and all(_kind_ok("float", v) for v in value.values())
        )
    raise AssertionError(kind)


def validate_log(path: str | Path) -> list[str]:
    """Problems with a log (empty list: none found).

    Required keys per division (taken from the log's ``submission_division``), their
    counts, the type of every known key's value, ``epoch_num``/``status``/``step``
    metadata, and that an evaluation reached the logged target.
    """
    lines = parse_log(path)
    problems: list[str] = []
    counts = Counter(line.key for line in lines)
    divisions = [line.value for line in lines if line.key == "submission_division"]
    division = divisions[0] if divisions else None
    if division not in ("closed", "open"):
        problems.append(f"submission_division missing or invalid: {division!r}")
        division = "open"  # check at least the common keys
    for key in K.required_once(division):
        if counts[key] != 1:
            problems.append(f"{key}: {counts[key]} lines, required exactly one")
    for key in K.required_at_least_once(division):
        if not counts[key]:
            problems.append(f"{key}: no line, required at least one")

    for line in lines:
        where = f"line {line.lineno} ({line.key})"
        kind = K.VALUE_KINDS.get(line.key)
        if kind is not None and not _kind_ok(kind, line.value):
            problems.append(f"{where}: value {line.value!r} is not of kind {kind}")
        if line.key in K.EPOCH_EVENTS:
            epoch = line.metadata.get(K.EPOCH_NUM)
            if not _kind_ok("int", epoch) or epoch < 0:
                problems.append(f"{where}: metadata epoch_num {epoch!r} is not a count")
        if line.key == K.RUN_STOP and line.metadata.get(K.STATUS) not in K.RUN_STOP_STATUSES:
            problems.append(f"{where}: metadata status {line.metadata.get(K.STATUS)!r}")
        if line.key == K.TRACKED_STATS and not _kind_ok("int", line.metadata.get(K.STEP)):
            problems.append(f"{where}: metadata step {line.metadata.get(K.STEP)!r}")
        if line.key == K.EVAL_ACCURACY and _kind_ok("float", line.value):
            if not 0.0 <= line.value <= 1.0:
                problems.append(f"{where}: accuracy {line.value} outside [0, 1]")

    targets = [line.value for line in lines if line.key == "target_avg_lddt_ca_value"]
    accuracies = [
        line.value
        for line in lines
        if line.key == K.EVAL_ACCURACY and _kind_ok("float", line.value)
    ]
    stops = [line for line in lines if line.key == K.RUN_STOP]
    if targets and _kind_ok("float", targets[0]) and stops:
        reached = any(a >= targets[0] for a in accuracies)
        success = stops[0].metadata.get(K.STATUS) == "success"
        if success and not reached:
            problems.append(f"run_stop says success but no eval_accuracy >= {targets[0]}")
    return problems


@dataclass(frozen=True)
class CheckerResult:
    ok: bool
    returncode: int
    output: str = field(repr=False)

    def errors(self) -> list[str]:
        return [ln for ln in self.output.splitlines() if "ERROR" in ln or "Traceback" in ln]


def run_compliance_checker(
    path: str | Path, *, python: str | None = None, timeout_s: float = 300.0
) -> CheckerResult:
    """``python -m mlperf_logging.compliance_checker --usage hpc --ruleset 3.0.0 LOG``.

    Run as a subprocess: the checker configures the root logger and exits the
    interpreter, neither of which a training process should suffer.
    """
    with tempfile.TemporaryDirectory(prefix="mlperf_cc_") as tmp:
        cmd = [
            python or sys.executable,
            "-m",
            "mlperf_logging.compliance_checker",
            "--usage",
            USAGE,
            "--ruleset",
            RULESET,
            "--log_output",
            str(Path(tmp) / "compliance.log"),
            str(path),
        ]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout_s, cwd=tmp, check=False
        )
    output = proc.stdout + proc.stderr
    # The checker exits 0 only on success; "SUCCESS" guards against a crash that exits 0.
    ok = proc.returncode == 0 and "SUCCESS" in output
    return CheckerResult(ok=ok, returncode=proc.returncode, output=output)
