"""The MLPerf reference checkpoint layout: strict loading, atomic saving, hashing.

The MLPerf HPC OpenFold initial checkpoint (`mlperf_hpc_openfold_resumable_checkpoint.pt`)
is a dict ``{"alphafold_state_dict": {name: tensor}, "optimizer_state_dict": ...,
"iteration": int}``; the tensor names and shapes are those of the reference model, listed
in the package file ``mlperf_reference_state_dict.tsv``. The optimizer state in that
file is indexed by each tensor's position in ``alphafold_state_dict`` (the reference builds
its optimizer from ``model.parameters()``); `optimizer_state_by_name` re-keys it by name.

A model whose internal layout differs from the reference (for example fused q/k/v/g
projections) provides two methods and the functions here use them instead of
``state_dict`` / ``load_state_dict``:

- ``reference_state_dict() -> dict[str, Tensor]``: its weights in the reference layout;
- ``load_reference_state_dict(state_dict) -> None``: loads such a dict (already checked
  here for names and shapes).
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import pickle
import tempfile
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

STATE_DICT_KEY = "alphafold_state_dict"
SHAPES_FILE = "mlperf_reference_state_dict.tsv"

# Longest list of names per category printed in one error; the full lists stay on the
# exception object (a 4,000-line message helps nobody).
_MAX_LISTED = 40


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model.

    ``missing``, ``unexpected`` and ``mismatched`` hold the complete lists when the error is
    about names and shapes (``mismatched`` as ``(name, checkpoint_shape, model_shape)``).
    """

    def __init__(
        self,
        message: str,
        *,
        missing: list[str] | None = None,
        unexpected: list[str] | None = None,
        mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] | None = None,
    ) -> None:
        super().__init__(message)
        self.missing = missing or []
        self.unexpected = unexpected or []
        self.mismatched = mismatched or []


# --------------------------------------------------------------------------- shapes


@functools.lru_cache(maxsize=1)
def _tsv_shapes() -> tuple[tuple[str, tuple[int, ...]], ...]:
    text = resources.files(__package__).joinpath(SHAPES_FILE).read_text(encoding="utf-8")
    rows = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#") or line.startswith("name\t"):
            continue
        name, shape = line.split("\t")
        rows.append((name, tuple(int(d) for d in shape.split("x")) if shape else ()))
    return tuple(rows)


def reference_state_dict_shapes(config: Any = None) -> dict[str, tuple[int, ...]]:
    """Reference tensor name -> shape, in the reference's order.

    Without ``config``: the MLPerf model, read from the packaged list (5,044 tensors).
    With an `AlphaFoldConfig`: the same names at that configuration's sizes (fewer blocks,
    narrower channels), derived from the AlphaFold parameter mapping.
    """
    if config is None:
        return dict(_tsv_shapes())
    from scalefold.checkpoint.alphafold_params import reference_shapes

    return reference_shapes(config)


# --------------------------------------------------------------------------- model views


def _unwrap(model: nn.Module) -> nn.Module:
    # DistributedDataParallel keeps the model in `.module`, torch.compile in `._orig_mod`;
    # their own state-dict names carry those prefixes, the reference's do not.
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def _reference_view(model: nn.Module) -> dict[str, torch.Tensor]:
    model = _unwrap(model)
    if hasattr(model, "reference_state_dict"):
        return dict(model.reference_state_dict())
    return dict(model.state_dict())


def _assign(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    model = _unwrap(model)
    with torch.no_grad():
        if hasattr(model, "load_reference_state_dict"):
            model.load_reference_state_dict(dict(state_dict))
        else:
            model.load_state_dict(dict(state_dict), strict=True)


# --------------------------------------------------------------------------- checking


def _shape_str(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _listing(title: str, lines: list[str]) -> list[str]:
    out = [f"  {title}:"]
    out += [f"    {line}" for line in lines[:_MAX_LISTED]]
    if len(lines) > _MAX_LISTED:
        out.append(f"    ... and {len(lines) - _MAX_LISTED} more")
    return out


def check_shapes(
    given: Mapping[str, tuple[int, ...]],
    expected: Mapping[str, tuple[int, ...]],
    source: str,
    *,
    not_tensors: list[str] | None = None,
) -> None:
    """Raise one `CheckpointError` naming every missing, unexpected and mis-shaped name."""
    not_tensors = not_tensors or []
    missing = [name for name in expected if name not in given and name not in not_tensors]
    unexpected = [name for name in given if name not in expected]
    mismatched = [
        (name, tuple(shape), tuple(expected[name]))
        for name, shape in given.items()
        if name in expected and tuple(shape) != tuple(expected[name])
    ]
    if not (missing or unexpected or mismatched or not_tensors):
        return

    counts = [
        f"{len(missing)} missing",
        f"{len(unexpected)} unexpected",
        f"{len(mismatched)} mis-shaped",
    ]
    if not_tensors:
        counts.append(f"{len(not_tensors)} not tensors")
    lines = [f"{source}: the checkpoint does not match the model ({', '.join(counts)})."]
    if missing:
        lines += _listing(
            "missing (the model has them, the checkpoint does not)",
            [f"{n} {_shape_str(tuple(expected[n]))}" for n in missing],
        )
    if unexpected:
        lines += _listing(
            "unexpected (in the checkpoint, not in the model)",
            [f"{n} {_shape_str(tuple(given[n]))}" for n in unexpected],
        )
    if mismatched:
        lines += _listing(
            "mis-shaped (checkpoint vs model)",
            [f"{n}: {_shape_str(a)} vs {_shape_str(b)}" for n, a, b in mismatched],
        )
    if not_tensors:
        lines += _listing("not tensors", not_tensors)
    if unexpected and all(n.startswith("module.") for n in unexpected):
        lines.append(
            "  hint: every unexpected name starts with 'module.': the checkpoint was saved "
            "from a DistributedDataParallel wrapper."
        )
    raise CheckpointError(
        "\n".join(lines), missing=missing, unexpected=unexpected, mismatched=mismatched
    )


def check_state_dict(
    state_dict: Mapping[str, Any],
    expected: Mapping[str, tuple[int, ...]],
    source: str,
) -> None:
    """`check_shapes` for a state dict; values that are not tensors are reported too."""
    given = {}
    not_tensors = []
    for name, value in state_dict.items():
        if isinstance(value, torch.Tensor):
            given[name] = tuple(value.shape)
        elif name in expected:
            not_tensors.append(name)
        else:
            given[name] = ()
    check_shapes(given, expected, source, not_tensors=not_tensors)


# --------------------------------------------------------------------------- reading


def _unsupported_line(message: str) -> str:
    for line in message.splitlines():
        if "Unsupported" in line or "WeightsUnpickler error" in line.strip():
            if line.strip() and not line.strip().endswith("error:"):
                return line.strip()
    return message.strip().splitlines()[0] if message.strip() else ""


def read_checkpoint_file(path: str | os.PathLike[str], *, trust_pickle: bool = False) -> Any:
    """``torch.load`` a checkpoint on the CPU, turning every failure into a clear error.

    ``weights_only=True`` (tensors, containers, numbers, strings only) unless
    ``trust_pickle``: a file holding other Python objects then fails with a message that
    says so instead of running its pickled code.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes), not a PyTorch checkpoint")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as error:
        detail = _unsupported_line(str(error))
        if "global" in detail.lower():
            hint = (
                "; it holds Python objects other than tensors and containers: if you "
                "trust the file, pass trust_pickle=True"
            )
        else:
            hint = ". Is it a file written by torch.save?"
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({size} bytes; the weights-only "
            f"unpickler failed: {detail}){hint}"
        ) from error
    except Exception as error:  # noqa: BLE001 - torch raises many types for bad files
        detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({size} bytes; "
            f"{type(error).__name__}{': ' + detail if detail else ''}). "
            "Is the file truncated or not written by torch.save?"
        ) from error


def _split_checkpoint(
    checkpoint: Any, source: str
) -> tuple[Mapping[str, Any], dict[str, Any]]:
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(
            f"{source}: expected a dict (a checkpoint with '{STATE_DICT_KEY}' or a state "
            f"dict), got {type(checkpoint).__name__}"
        )
    if STATE_DICT_KEY in checkpoint:
        state = checkpoint[STATE_DICT_KEY]
        if not isinstance(state, Mapping):
            raise CheckpointError(
                f"{source}: '{STATE_DICT_KEY}' is a {type(state).__name__}, not a dict"
            )
        return state, {k: v for k, v in checkpoint.items() if k != STATE_DICT_KEY}
    if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        return checkpoint, {}
    keys = ", ".join(repr(k) for k in list(checkpoint)[:10]) or "none"
    raise CheckpointError(
        f"{source}: no '{STATE_DICT_KEY}' entry and not a state dict of tensors "
        f"(top-level keys: {keys})"
    )


# --------------------------------------------------------------------------- public API


def load_reference_checkpoint(
    model: nn.Module,
    path_or_state_dict: str | os.PathLike[str] | Mapping[str, Any],
    *,
    trust_pickle: bool = False,
) -> dict[str, Any]:
    """Load the reference-layout weights into ``model`` with strict checking.

    ``path_or_state_dict``: a checkpoint file, a checkpoint dict with the weights under
    ``"alphafold_state_dict"``, or a bare state dict. Every tensor of the model must be
    present with its exact shape and nothing else may be: otherwise one `CheckpointError`
    lists all missing, unexpected and mis-shaped names and the model is left untouched.

    Returns the checkpoint's other top-level entries (e.g. ``optimizer_state_dict``,
    ``iteration``), ``{}`` for a bare state dict.
    """
    if isinstance(path_or_state_dict, Mapping):
        source = "checkpoint dict"
        checkpoint: Any = path_or_state_dict
    else:
        source = str(path_or_state_dict)
        checkpoint = read_checkpoint_file(path_or_state_dict, trust_pickle=trust_pickle)
    state, extras = _split_checkpoint(checkpoint, source)
    expected = {name: tuple(t.shape) for name, t in _reference_view(model).items()}
    check_state_dict(state, expected, source)
    _assign(model, state)
    return extras


def _compact(tensor: torch.Tensor) -> torch.Tensor:
    tensor = tensor.detach().cpu()
    # torch.save writes a view's whole storage; copy views so the file holds only the
    # tensor (fused internal weights exported as slices would otherwise be saved N times).
    whole = tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size()
    if tensor.is_contiguous() and whole and tensor.storage_offset() == 0:
        return tensor
    return tensor.clone(memory_format=torch.contiguous_format)


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to a temporary file in the target directory, fsync, then rename.

    A crash mid-write leaves the previous file intact, never a truncated one.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        # mkstemp creates 0600; a checkpoint is meant to be read by other jobs.
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)
    return path


def save_reference_checkpoint(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``{"alphafold_state_dict": <reference-layout weights>, **extra}`` atomically.

    ``extra`` carries the other entries of a resumable checkpoint (optimizer state,
    iteration). Tensors are written on the CPU with their dtype, so loading this file and
    saving again reproduces every tensor bit for bit.
    """
    extra = dict(extra or {})
    if STATE_DICT_KEY in extra:
        raise ValueError(f"extra must not contain '{STATE_DICT_KEY}'")
    state = {name: _compact(t) for name, t in _reference_view(model).items()}
    return atomic_torch_save({STATE_DICT_KEY: state, **extra}, path)


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in chunks (the MLPerf ``init_checkpoint_sha256sum``)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def optimizer_state_by_name(
    optimizer_state_dict: Mapping[str, Any],
    names: list[str],
    shapes: Mapping[str, tuple[int, ...]] | None = None,
) -> dict[str, Any]:
    """Re-key a reference optimizer's per-parameter state by tensor name.

    ``names``: the parameter order the optimizer was built with; for the MLPerf checkpoint
    the order of its ``alphafold_state_dict`` (``list(reference_state_dict_shapes())`` if
    that file follows the packaged list). With ``shapes`` (name -> shape), each state
    tensor must have its parameter's number of elements, which catches a wrong order.
    """
    state = optimizer_state_dict.get("state", {})
    indexed = sorted(int(k) for k in state)
    if indexed and indexed[-1] >= len(names):
        raise CheckpointError(
            f"optimizer state has index {indexed[-1]} but only {len(names)} names were given"
        )
    out = {}
    for index in indexed:
        name = names[index]
        entry = state[index] if index in state else state[str(index)]
        if shapes is not None and name in shapes:
            numel = math.prod(shapes[name])
            for key, value in entry.items():
                if isinstance(value, torch.Tensor) and value.dim() > 0 and value.numel() != numel:
                    raise CheckpointError(
                        f"optimizer state {index} ({key}) has {value.numel()} elements but "
                        f"{name} has {numel}: the name order does not match the optimizer"
                    )
        out[name] = entry
    return out
