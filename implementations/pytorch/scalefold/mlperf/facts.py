"""Typed inputs of the MLPerf log: who submits, what the run is, what the data holds.

Every logged value arrives through one of these dataclasses, filled by the caller from the
run itself (the parsed config, the model it built, the checkpoint it hashed, the datasets
it indexed). Nothing here knows the benchmark's fixed values: a wrong value is the
compliance checker's to catch, a wrong *type* is caught here, at construction, because the
checker compares with ``==`` and would let ``1`` pass for ``True`` or ``"700"`` fail with
an unhelpful message.
"""

from __future__ import annotations

import datetime
import hashlib
import numbers
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = [
    "DatasetFacts",
    "MLPerfLogError",
    "RunFacts",
    "SubmissionInfo",
    "count_parameters",
    "sha256_of_file",
]

DIVISIONS = ("closed", "open")
STATUSES = ("onprem", "cloud", "preview", "research")
# The benchmark's rules: initialisation (init_start .. init_stop) stays under 30 minutes;
# the official checkers do not check it, compliance/check.py does (its own copy: it runs
# without this package).
INIT_LIMIT_S = 30 * 60.0

_SHA256 = re.compile(r"[0-9a-f]{64}")


class MLPerfLogError(ValueError):
    """A value, a type or an event order that would make the log non-compliant."""


# --- value coercion -----------------------------------------------------------------
# Numbers are accepted from numpy/python alike (numbers.Integral / numbers.Real) but
# stored as plain int/float so json writes them as numbers; bool is excluded from the
# numeric kinds because it is an int subclass and would silently log as true/false.


def as_int(name: str, value: Any, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise MLPerfLogError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    out = int(value)
    if minimum is not None and out < minimum:
        raise MLPerfLogError(f"{name} must be >= {minimum}, got {out}")
    return out


def as_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise MLPerfLogError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    out = float(value)
    if out != out or out in (float("inf"), float("-inf")):
        raise MLPerfLogError(f"{name} must be finite, got {out}")
    return out


def as_bool(name: str, value: Any) -> bool:
    # numpy's bool scalar is not a bool subclass; recognise it without importing numpy.
    if isinstance(value, bool):
        return value
    if type(value).__module__ == "numpy" and type(value).__name__ in ("bool_", "bool"):
        return bool(value)
    raise MLPerfLogError(f"{name} must be a boolean, got {type(value).__name__} {value!r}")


def as_str(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise MLPerfLogError(f"{name} must be a non-empty string, got {value!r}")
    return value


def as_date(name: str, value: Any) -> str:
    text = as_str(name, value)
    try:
        datetime.date.fromisoformat(text)
    except ValueError as exc:
        raise MLPerfLogError(f"{name} must be a YYYY-MM-DD date, got {text!r}") from exc
    if len(text) != 10:
        raise MLPerfLogError(f"{name} must be a YYYY-MM-DD date, got {text!r}")
    return text


def as_sha256(name: str, value: Any) -> str:
    text = as_str(name, value)
    if not _SHA256.fullmatch(text):
        raise MLPerfLogError(f"{name} must be 64 lowercase hex digits, got {text!r}")
    return text


# Kind names double as the type contract the log validator applies to parsed lines.
_COERCE = {
    "int": as_int,
    "float": as_float,
    "bool": as_bool,
    "str": as_str,
    "date": as_date,
    "sha256": as_sha256,
}


def _fact(kind: str, *, key: str | None = None, minimum: int | None = None, default: Any = ...):
    meta = {"kind": kind, "key": key, "minimum": minimum}
    if default is ...:
        return field(metadata=meta)
    return field(default=default, metadata=meta)


def _coerce_all(obj: Any) -> None:
    for f in fields(obj):
        value = getattr(obj, f.name)
        if value is None and f.default is None:
            continue  # optional fact that does not apply to this run
        kind = f.metadata["kind"]
        if kind == "int":
            value = as_int(f.name, value, f.metadata["minimum"])
        else:
            value = _COERCE[kind](f.name, value)
        # frozen dataclass: __post_init__ is the one place allowed to normalise values
        object.__setattr__(obj, f.name, value)


def _log_items(obj: Any) -> Iterator[tuple[str, Any]]:
    for f in fields(obj):
        value = getattr(obj, f.name)
        if value is None:
            continue
        yield (f.metadata["key"] or f.name), value


def fact_kinds(cls: type) -> dict[str, str]:
    """Log key -> kind name for every field of a facts dataclass."""
    return {(f.metadata["key"] or f.name): f.metadata["kind"] for f in fields(cls)}


@dataclass(frozen=True, kw_only=True)
class SubmissionInfo:
    """Who runs the benchmark and on what; logged first, once.

    ``platform`` is the system's name as the results tree spells it (the reference logs
    e.g. ``"260xNVIDIA DGX H100"``); nodes and accelerators per node describe the
    machine the run actually used.
    """

    benchmark: str = _fact("str", key="submission_benchmark")
    org: str = _fact("str", key="submission_org")
    division: str = _fact("str", key="submission_division")
    status: str = _fact("str", key="submission_status")
    platform: str = _fact("str", key="submission_platform")
    number_of_nodes: int = _fact("int", minimum=1)
    accelerators_per_node: int = _fact("int", minimum=0)

    def __post_init__(self) -> None:
        _coerce_all(self)
        if self.division not in DIVISIONS:
            raise MLPerfLogError(f"division must be one of {DIVISIONS}, got {self.division!r}")
        if self.status not in STATUSES:
            raise MLPerfLogError(f"status must be one of {STATUSES}, got {self.status!r}")

    def log_items(self) -> Iterator[tuple[str, Any]]:
        return _log_items(self)


@dataclass(frozen=True, kw_only=True)
class RunFacts:
    """The run's hyper-parameters and the benchmark definition it trained under.

    Field names are the log keys. Fill each from the object that really governs the run
    (the optimizer's param group, the loss config, the data config, the built model),
    not from a copy of the rules, so that the log is evidence of what ran.

    ``init_checkpoint_sha256sum`` is ``None`` for a run from scratch (open division);
    the closed division needs it. ``num_recycling_iters`` is the largest number of
    recycling iterations a step may draw (steps draw uniformly from 0..it).
    """

    seed: int = _fact("int", minimum=0)
    number_of_ranks: int = _fact("int", minimum=1)
    global_batch_size: int = _fact("int", minimum=1)
    gradient_accumulation_steps: int = _fact("int", minimum=1)
    target_avg_lddt_ca_value: float = _fact("float")
    train_max_pdb_release_date: str = _fact("date")
    val_min_cameo_submission_date: str = _fact("date")
    val_max_cameo_submission_date: str = _fact("date")
    val_max_sequence_length: int = _fact("int", minimum=1)
    val_every_iters: int = _fact("int", minimum=1)
    precision: str = _fact("str")
    train_sequence_crop_size: int = _fact("int", minimum=1)
    num_recycling_iters: int = _fact("int", minimum=0)
    max_msa_clusters: int = _fact("int", minimum=1)
    max_extra_msa: int = _fact("int", minimum=0)
    templates_enabled: bool = _fact("bool")
    max_templates: int = _fact("int", minimum=0)
    fape_loss_weight: float = _fact("float")
    fape_loss_backbone_weight: float = _fact("float")
    fape_loss_sidechain_weight: float = _fact("float")
    supervised_chi_loss_weight: float = _fact("float")
    distogram_loss_weight: float = _fact("float")
    masked_msa_loss_weight: float = _fact("float")
    plddt_loss_weight: float = _fact("float")
    opt_name: str = _fact("str")
    opt_base_learning_rate: float = _fact("float")
    opt_adam_beta_1: float = _fact("float")
    opt_adam_beta_2: float = _fact("float")
    opt_adam_epsilon: float = _fact("float")
    opt_weight_decay: float = _fact("float")
    opt_amsgrad: bool = _fact("bool")
    opt_gradient_clipping: bool = _fact("bool")
    opt_gradient_clip_norm: float = _fact("float")
    opt_learning_rate_warmup_init: float = _fact("float")
    opt_learning_rate_warmup_steps: int = _fact("int", minimum=0)
    init_checkpoint_sha256sum: str | None = _fact("sha256", default=None)
    swa_enabled: bool = _fact("bool")
    swa_decay_rate: float = _fact("float")
    model_parameters_count: int = _fact("int", minimum=1)
    initial_training_dataloader_type: str = _fact("str")

    def __post_init__(self) -> None:
        _coerce_all(self)

    def log_items(self) -> Iterator[tuple[str, Any]]:
        return _log_items(self)


@dataclass(frozen=True, kw_only=True)
class DatasetFacts:
    """Sizes of the datasets the run actually indexed (after every filter).

    Separate from :class:`RunFacts` because the reference builds its datasets inside the
    timed region, after ``run_start``, so the counts are known only then.
    """

    train_samples: int = _fact("int", minimum=1)
    eval_samples: int = _fact("int", minimum=1)

    def __post_init__(self) -> None:
        _coerce_all(self)

    def log_items(self) -> Iterator[tuple[str, Any]]:
        return _log_items(self)


def sha256_of_file(path: str | Path, chunk_bytes: int = 1 << 24) -> str:
    """Hex sha256 of a file, streamed (the initial checkpoint is ~1.1 GiB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def count_parameters(module: Any) -> int:
    """Number of scalar parameters of a torch module (what ``model_parameters_count`` means)."""
    params: Iterable[Any] = module.parameters()
    return int(sum(p.numel() for p in params))
