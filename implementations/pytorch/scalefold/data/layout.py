"""Readers for the official MLPerf OpenFold data layout.

The layout (see docs/DATA.md) is what the MLPerf reference's preprocessing writes:

    pdb_mmcif/processed/chains.csv
    pdb_mmcif/processed/dicts/<pdb_id[1:3]>      pickled {pdb_id: mmcif_dict}
    pdb_mmcif/processed/obsolete.dat
    open_protein_set/processed/pdb_alignments/{0..9}.db + super.index

Every reader raises :class:`DataError` naming the chain and the file involved, so a
bad entry in a 600 GiB dataset can be found without a debugger.
"""

from __future__ import annotations

import json
import os
import pickle
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

CHAINS_CSV_COLUMNS = (
    "pdb_chain_id",
    "pdb_id",
    "author_chain_id",
    "mmcif_chain_ids",
    "release_date",
    "resolution",
    "pdb_cluster_id",
    "sequence_length",
    "sequence",
)

# Identifier-like columns must stay strings: a PDB id such as "1e10" or an author
# chain "1" would otherwise be parsed as numbers, and a chain called "NA" as NaN.
_STRING_COLUMNS = (
    "pdb_chain_id",
    "pdb_id",
    "author_chain_id",
    "mmcif_chain_ids",
    "release_date",
    "sequence",
)
# Cells that must never be empty; integer columns must hold integers everywhere.
_REQUIRED_COLUMNS = ("pdb_chain_id", "pdb_id", "author_chain_id", "release_date")
_INT_COLUMNS = ("pdb_cluster_id", "sequence_length")


class DataError(ValueError):
    """A problem with one input record, naming the chain and the file it came from."""

    def __init__(
        self, message: str, *, chain: str | None = None, path: os.PathLike | str | None = None
    ):
        self.message = message  # without the [chain, file] prefix
        self.chain = chain
        self.path = None if path is None else str(path)
        where = []
        if chain is not None:
            where.append(f"chain {chain}")
        if path is not None:
            where.append(f"file {path}")
        prefix = f"[{', '.join(where)}] " if where else ""
        super().__init__(prefix + message)


@dataclass(frozen=True)
class DataLayout:
    """Paths of the official layout under one root folder."""

    root: Path

    @property
    def pdb_mmcif_dir(self) -> Path:
        return Path(self.root) / "pdb_mmcif" / "processed"

    @property
    def chains_csv(self) -> Path:
        return self.pdb_mmcif_dir / "chains.csv"

    @property
    def dicts_dir(self) -> Path:
        return self.pdb_mmcif_dir / "dicts"

    @property
    def obsolete_dat(self) -> Path:
        return self.pdb_mmcif_dir / "obsolete.dat"

    @property
    def alignments_dir(self) -> Path:
        return Path(self.root) / "open_protein_set" / "processed" / "pdb_alignments"

    @property
    def super_index(self) -> Path:
        return self.alignments_dir / "super.index"

    def required(self) -> tuple[tuple[Path, bool], ...]:
        """(path, is a directory) of every piece a run needs."""
        return (
            (self.pdb_mmcif_dir, True),
            (self.chains_csv, False),
            (self.dicts_dir, True),
            (self.obsolete_dat, False),
            (self.alignments_dir, True),
            (self.super_index, False),
        )

    def check(self) -> None:
        """Raise DataError naming the first missing (or mistyped) piece of the layout."""
        root = Path(self.root)
        if not root.is_dir():
            raise DataError("data root directory not found", path=root)
        for path, is_dir in self.required():
            if not path.exists():
                raise DataError(
                    "missing from the official data layout (docs/DATA.md lists it)", path=path
                )
            if path.is_dir() != is_dir:
                kind = "a directory" if is_dir else "a file"
                raise DataError(f"should be {kind} in the official data layout", path=path)


# --------------------------------------------------------------------------- chains.csv


def load_chains_csv(path: os.PathLike | str) -> pd.DataFrame:
    """Read chains.csv; empty cells (and only those) are missing values.

    Every cell is checked for its column's type: a bad one raises DataError naming the
    file, the row (and its line, the header being line 1), the column and the chain.
    """
    path = Path(path)
    if not path.exists():
        raise DataError("chains.csv not found", path=path)
    try:
        df = pd.read_csv(
            path,
            na_values=[""],
            keep_default_na=False,
            dtype={name: str for name in _STRING_COLUMNS},
        )
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"unreadable chains.csv: {exc}", path=path) from exc
    missing = [c for c in CHAINS_CSV_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"chains.csv lacks columns {missing}", path=path)
    for column in _REQUIRED_COLUMNS:
        _raise_for_rows(df, df[column].isna().to_numpy(), column, "empty cell", path)
    dates = pd.to_datetime(df["release_date"], format="%Y-%m-%d", errors="coerce")
    _raise_for_rows(df, dates.isna().to_numpy(), "release_date", "not a YYYY-MM-DD date", path)
    df["resolution"] = _numeric_column(df, "resolution", path, integer=False)
    for column in _INT_COLUMNS:
        df[column] = _numeric_column(df, column, path, integer=True)
    return df


def _raise_for_rows(
    df: pd.DataFrame, bad: np.ndarray, column: str, problem: str, path: Path
) -> None:
    """DataError for the first row flagged in ``bad`` (and how many more there are)."""
    rows = np.flatnonzero(bad)
    if rows.size == 0:
        return
    row = int(rows[0])
    chain = df["pdb_chain_id"].iloc[row]
    value = df[column].iloc[row]
    more = f" (and {rows.size - 1} more rows)" if rows.size > 1 else ""
    raise DataError(
        f"row {row + 1} (line {row + 2}), column {column!r}: {problem}: {value!r}{more}",
        chain=chain if isinstance(chain, str) else None,
        path=path,
    )


def _numeric_column(df: pd.DataFrame, column: str, path: Path, integer: bool) -> pd.Series:
    """The column as int64 (every cell an integer) or float64 (a number, empty or "nan")."""
    raw = df[column]
    values = pd.to_numeric(raw, errors="coerce").astype(np.float64)
    if raw.dtype == object or pd.api.types.is_string_dtype(raw):
        text = raw.astype(str).str.strip().str.lower()
        unparsed = values.isna() & raw.notna() & (text != "nan")
    else:
        unparsed = pd.Series(False, index=raw.index)
    _raise_for_rows(df, unparsed.to_numpy(), column, "not a number", path)
    if not integer:
        return values
    arr = values.to_numpy()
    finite = np.isfinite(arr)
    _raise_for_rows(df, ~finite, column, "an integer is required", path)
    _raise_for_rows(df, arr != np.round(arr), column, "not an integer", path)
    return pd.Series(arr.astype(np.int64), index=raw.index, name=column)


def write_chains_csv(df: pd.DataFrame, path: os.PathLike | str) -> None:
    df.loc[:, list(CHAINS_CSV_COLUMNS)].to_csv(path, index=False)


# --------------------------------------------------------------------------- dicts/


def dicts_shard_name(pdb_id: str) -> str:
    """The dicts/ file holding ``pdb_id`` (the PDB mirror's two middle characters)."""
    return pdb_id.lower()[1:3]


def compress_atoms(
    atoms: dict[str, dict[str, np.ndarray]],
) -> dict[str, dict[str, tuple[bytes, tuple]]]:
    """{chain: {all_atom_positions [N,37,3] f32, all_atom_mask [N,37] bool}} -> (zlib bytes, shape) pairs."""
    out = {}
    for chain_id, arrays in atoms.items():
        positions = np.ascontiguousarray(arrays["all_atom_positions"], dtype=np.float32)
        mask = np.ascontiguousarray(arrays["all_atom_mask"], dtype=bool)
        out[chain_id] = {
            "all_atom_positions": (zlib.compress(positions.tobytes()), tuple(positions.shape)),
            "all_atom_mask": (zlib.compress(mask.tobytes()), tuple(mask.shape)),
        }
    return out


def decompress_atoms(
    atoms: dict[str, dict[str, tuple[bytes, tuple]]], *, pdb_id: str = "?", path: Path | None = None
) -> dict[str, dict[str, np.ndarray]]:
    if not isinstance(atoms, dict):
        raise DataError(f"atoms is a {type(atoms).__name__}, not a dict", chain=pdb_id, path=path)
    out = {}
    for chain_id, packed in atoms.items():
        try:
            pos_bytes, pos_shape = packed["all_atom_positions"]
            mask_bytes, mask_shape = packed["all_atom_mask"]
            # copy(): frombuffer views are read-only and the caller may edit in place.
            positions = (
                np.frombuffer(zlib.decompress(pos_bytes), dtype=np.float32)
                .reshape(pos_shape)
                .copy()
            )
            mask = np.frombuffer(zlib.decompress(mask_bytes), dtype=bool).reshape(mask_shape).copy()
            if positions.ndim != 3 or positions.shape[1:] != (37, 3):
                raise ValueError(f"positions of shape {positions.shape}, expected [N, 37, 3]")
            if mask.shape != positions.shape[:2]:
                raise ValueError(f"mask of shape {mask.shape}, positions {positions.shape}")
        except (KeyError, TypeError, ValueError, zlib.error) as exc:
            raise DataError(
                f"corrupt atoms record: {exc!r}", chain=f"{pdb_id}_{chain_id}", path=path
            ) from exc
        out[chain_id] = {"all_atom_positions": positions, "all_atom_mask": mask}
    return out


class MmcifDictStore:
    """Reads mmcif dicts from ``dicts/`` and keeps the last few shard files in memory.

    A shard holds every entry sharing two id characters (a few MB); training samples and
    templates hit the same shards repeatedly, so a small per-instance LRU saves unpickling.
    """

    def __init__(self, dicts_dir: os.PathLike | str, cache_shards: int = 8):
        self.dicts_dir = Path(dicts_dir)
        self.cache_shards = cache_shards
        self._cache: OrderedDict[str, dict] = OrderedDict()

    def shard_path(self, pdb_id: str) -> Path:
        return self.dicts_dir / dicts_shard_name(pdb_id)

    def _load_shard(self, pdb_id: str) -> dict:
        name = dicts_shard_name(pdb_id)
        if name in self._cache:
            self._cache.move_to_end(name)
            return self._cache[name]
        path = self.dicts_dir / name
        if not path.exists():
            raise DataError("mmcif dicts shard not found", chain=pdb_id, path=path)
        with open(path, "rb") as f:
            try:
                shard = pickle.load(f)
            except OSError:
                raise  # the file system failed, not the bytes: not a data fault
            except Exception as exc:
                # Bad bytes make unpickling raise nearly anything (UnpicklingError,
                # EOFError, ValueError, KeyError, ImportError, MemoryError, ...); the try
                # holds only this one load, so no programming error is hidden by it.
                raise DataError(
                    f"unreadable mmcif dicts shard (truncated or corrupt): {exc!r}",
                    chain=pdb_id,
                    path=path,
                ) from exc
        if not isinstance(shard, dict):
            raise DataError(
                f"mmcif dicts shard holds a {type(shard).__name__}, not a dict",
                chain=pdb_id,
                path=path,
            )
        if self.cache_shards > 0:
            self._cache[name] = shard
            while len(self._cache) > self.cache_shards:
                self._cache.popitem(last=False)
        return shard

    def get(self, pdb_id: str) -> dict[str, Any]:
        """The mmcif dict of ``pdb_id`` with atoms decompressed to numpy arrays."""
        pdb_id = pdb_id.lower()
        shard = self._load_shard(pdb_id)
        if pdb_id not in shard:
            raise DataError(
                "pdb id not in its mmcif dicts shard", chain=pdb_id, path=self.shard_path(pdb_id)
            )
        record = shard[pdb_id]
        bad = _record_problem(record)
        if bad is not None:
            raise DataError(
                f"malformed mmcif dict: {bad}", chain=pdb_id, path=self.shard_path(pdb_id)
            )
        record = dict(record)
        record["atoms"] = decompress_atoms(
            record["atoms"], pdb_id=pdb_id, path=self.shard_path(pdb_id)
        )
        return record

    def chain_atoms(
        self, pdb_id: str, author_chain_id: str
    ) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
        """(mmcif dict, positions [N,37,3] f32, mask [N,37] bool) for one chain; fails on no resolved atoms."""
        chain = f"{pdb_id}_{author_chain_id}"
        try:
            record = self.get(pdb_id)
        except DataError as exc:  # name the chain asked for, not only its entry
            if exc.chain != pdb_id.lower():
                raise
            raise DataError(exc.message, chain=chain, path=exc.path) from exc
        if author_chain_id not in record["atoms"]:
            raise DataError(
                "author chain not in mmcif dict", chain=chain, path=self.shard_path(pdb_id)
            )
        atoms = record["atoms"][author_chain_id]
        if not atoms["all_atom_mask"].any():
            raise DataError(
                "chain has no resolved atoms", chain=chain, path=self.shard_path(pdb_id)
            )
        if not np.isfinite(atoms["all_atom_positions"]).all():
            raise DataError(
                "non-finite atom positions", chain=chain, path=self.shard_path(pdb_id)
            )
        return record, atoms["all_atom_positions"], atoms["all_atom_mask"]


def _record_problem(record: Any) -> str | None:
    """What is wrong with the shape of one mmcif dict (None: nothing), before it is used:
    ``atoms`` is required; ``sequences`` and ``release_date`` (templates read them) must
    have their types where present."""
    if not isinstance(record, dict):
        return f"a {type(record).__name__}, not a dict"
    if "atoms" not in record:
        return "no 'atoms' field"
    for key, kind in (("atoms", dict), ("sequences", dict), ("release_date", str)):
        if key in record and not isinstance(record[key], kind):
            return f"{key!r} is a {type(record[key]).__name__}, not a {kind.__name__}"
    return None


# --------------------------------------------------------------------------- obsolete.dat


def load_obsolete(path: os.PathLike | str) -> dict[str, str]:
    """Obsolete PDB id -> replacing id, from the wwPDB ``obsolete.dat`` (lower case).

    Lines look like ``OBSLTE    31-JUL-94 116L     216L``; entries withdrawn without a
    replacement carry no fourth field and are left out.
    """
    path = Path(path)
    if not path.exists():
        raise DataError("obsolete.dat not found", path=path)
    mapping = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 4 and fields[0] == "OBSLTE":
                    mapping[fields[2].lower()] = fields[3].lower()
    except UnicodeDecodeError as exc:
        raise DataError(f"obsolete.dat is not text: {exc}", path=path) from exc
    return mapping


# --------------------------------------------------------------------------- alignments


class AlignmentDB:
    """The sharded alignment database: ``super.index`` (JSON) plus ``N.db`` shard files.

    super.index maps a chain id to ``{"db": shard file name, "files": [[name, offset, size], ...]}``;
    chains with identical sequences share one entry.
    """

    def __init__(self, alignments_dir: os.PathLike | str, index: dict[str, dict] | None = None):
        self.alignments_dir = Path(alignments_dir)
        self.index_path = self.alignments_dir / "super.index"
        if index is None:
            if not self.index_path.exists():
                raise DataError("alignment super.index not found", path=self.index_path)
            with open(self.index_path, "rb") as f:
                try:
                    index = json.load(f)
                except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
                    raise DataError(
                        f"unreadable super.index (truncated or not JSON): {exc}",
                        path=self.index_path,
                    ) from exc
        if not isinstance(index, dict):
            raise DataError(
                f"super.index holds a JSON {type(index).__name__}, not an object",
                path=self.index_path,
            )
        self.index = index

    def __contains__(self, chain_id: str) -> bool:
        return chain_id in self.index

    def __len__(self) -> int:
        return len(self.index)

    def entry(self, chain_id: str) -> tuple[Path, list[tuple[str, int, int]]]:
        """(shard path, [(file name, offset, size), ...]) of ``chain_id``'s index entry."""
        entry = self.index.get(chain_id)
        if entry is None:
            raise DataError("no alignment entry", chain=chain_id, path=self.index_path)
        problem = _entry_problem(entry)
        if problem is not None:
            raise DataError(
                f"malformed super.index entry: {problem}", chain=chain_id, path=self.index_path
            )
        files = [(name, offset, size) for name, offset, size in entry["files"]]
        return self.alignments_dir / entry["db"], files

    def shard_path(self, chain_id: str) -> Path:
        return self.entry(chain_id)[0]

    def read(self, chain_id: str) -> dict[str, str]:
        """{file name: text} of all alignment files stored for ``chain_id``."""
        shard, files = self.entry(chain_id)
        if not shard.exists():
            raise DataError("alignment shard not found", chain=chain_id, path=shard)
        out = {}
        with open(shard, "rb") as f:
            shard_size = os.fstat(f.fileno()).st_size
            for name, offset, size in files:
                if offset + size > shard_size:
                    raise DataError(
                        f"{name}: byte range [{offset}, {offset + size}) is past the end of the shard "
                        f"({shard_size} bytes)",
                        chain=chain_id,
                        path=shard,
                    )
                f.seek(offset)
                data = f.read(size)
                if len(data) != size:
                    raise DataError(
                        f"{name}: read {len(data)} of {size} bytes at offset {offset}",
                        chain=chain_id,
                        path=shard,
                    )
                try:
                    out[name] = data.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise DataError(
                        f"{name}: bytes [{offset}, {offset + size}) are not UTF-8 text ({exc})",
                        chain=chain_id,
                        path=shard,
                    ) from exc
        return out

    def problems(self) -> dict[str, list[DataError]]:
        """Entry-level faults found from the index alone (no shard is read), one DataError
        per bad entry naming the chain and the file, by kind: "malformed" entries,
        "missing_shard" (the shard file does not exist), "past_end" (a byte range past the
        end of its shard)."""
        sizes: dict[str, int | None] = {}
        out: dict[str, list[DataError]] = {"malformed": [], "missing_shard": [], "past_end": []}
        for chain_id, entry in self.index.items():
            problem = _entry_problem(entry)
            if problem is not None:
                out["malformed"].append(
                    DataError(
                        f"malformed super.index entry: {problem}",
                        chain=chain_id,
                        path=self.index_path,
                    )
                )
                continue
            db = entry["db"]
            if db not in sizes:
                shard = self.alignments_dir / db
                sizes[db] = shard.stat().st_size if shard.is_file() else None
            size = sizes[db]
            shard = self.alignments_dir / db
            if size is None:
                out["missing_shard"].append(
                    DataError("alignment shard not found", chain=chain_id, path=shard)
                )
                continue
            end = max((o + n for _, o, n in entry["files"]), default=0)
            if end > size:
                out["past_end"].append(
                    DataError(
                        f"byte range up to {end} is past the end of the shard ({size} bytes)",
                        chain=chain_id,
                        path=shard,
                    )
                )
        return out


def _entry_problem(entry: Any) -> str | None:
    """What is wrong with one super.index entry (None: nothing)."""
    if not isinstance(entry, dict):
        return f"a JSON {type(entry).__name__}, not an object"
    db, files = entry.get("db"), entry.get("files")
    if not isinstance(db, str) or not db:
        return f"'db' is {db!r}, not a shard file name"
    if not isinstance(files, list):
        return f"'files' is {type(files).__name__}, not a list"
    for item in files:
        if (
            not isinstance(item, list)
            or len(item) != 3
            or not isinstance(item[0], str)
            or not all(type(v) is int and v >= 0 for v in item[1:])
        ):
            return f"file item {item!r} is not [name, offset >= 0, size >= 0]"
    return None
