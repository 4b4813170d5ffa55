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


class DataError(ValueError):
    """A problem with one input record, naming the chain and the file it came from."""

    def __init__(
        self, message: str, *, chain: str | None = None, path: os.PathLike | str | None = None
    ):
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

    def check(self) -> None:
        """Raise DataError for the first missing piece of the layout."""
        for path in (self.chains_csv, self.dicts_dir, self.obsolete_dat, self.super_index):
            if not path.exists():
                raise DataError("missing from the official data layout", path=path)


# --------------------------------------------------------------------------- chains.csv


def load_chains_csv(path: os.PathLike | str) -> pd.DataFrame:
    """Read chains.csv; empty cells (and only those) are missing values."""
    path = Path(path)
    if not path.exists():
        raise DataError("chains.csv not found", path=path)
    df = pd.read_csv(
        path,
        na_values=[""],
        keep_default_na=False,
        dtype={name: str for name in _STRING_COLUMNS},
    )
    missing = [c for c in CHAINS_CSV_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"chains.csv lacks columns {missing}", path=path)
    df["resolution"] = pd.to_numeric(df["resolution"], errors="coerce").astype(np.float64)
    df["pdb_cluster_id"] = df["pdb_cluster_id"].astype(np.int64)
    df["sequence_length"] = df["sequence_length"].astype(np.int64)
    return df


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
        except (KeyError, ValueError, zlib.error) as exc:
            raise DataError(
                f"corrupt atoms record: {exc}", chain=f"{pdb_id}_{chain_id}", path=path
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
        try:
            with open(path, "rb") as f:
                shard = pickle.load(f)
        except (pickle.UnpicklingError, EOFError) as exc:
            raise DataError(
                f"unreadable mmcif dicts shard: {exc}", chain=pdb_id, path=path
            ) from exc
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
        record = dict(shard[pdb_id])
        record["atoms"] = decompress_atoms(
            record["atoms"], pdb_id=pdb_id, path=self.shard_path(pdb_id)
        )
        return record

    def chain_atoms(
        self, pdb_id: str, author_chain_id: str
    ) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
        """(mmcif dict, positions [N,37,3] f32, mask [N,37] bool) for one chain; fails on no resolved atoms."""
        record = self.get(pdb_id)
        chain = f"{pdb_id}_{author_chain_id}"
        if author_chain_id not in record["atoms"]:
            raise DataError(
                "author chain not in mmcif dict", chain=chain, path=self.shard_path(pdb_id)
            )
        atoms = record["atoms"][author_chain_id]
        if not atoms["all_atom_mask"].any():
            raise DataError(
                "chain has no resolved atoms", chain=chain, path=self.shard_path(pdb_id)
            )
        return record, atoms["all_atom_positions"], atoms["all_atom_mask"]


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
    with open(path) as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 4 and fields[0] == "OBSLTE":
                mapping[fields[2].lower()] = fields[3].lower()
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
            with open(self.index_path) as f:
                index = json.load(f)
        self.index = index

    def __contains__(self, chain_id: str) -> bool:
        return chain_id in self.index

    def __len__(self) -> int:
        return len(self.index)

    def read(self, chain_id: str) -> dict[str, str]:
        """{file name: text} of all alignment files stored for ``chain_id``."""
        entry = self.index.get(chain_id)
        if entry is None:
            raise DataError("no alignment entry", chain=chain_id, path=self.index_path)
        shard = self.alignments_dir / entry["db"]
        if not shard.exists():
            raise DataError("alignment shard not found", chain=chain_id, path=shard)
        out = {}
        with open(shard, "rb") as f:
            shard_size = os.fstat(f.fileno()).st_size
            for name, offset, size in entry["files"]:
                if offset < 0 or size < 0 or offset + size > shard_size:
                    raise DataError(
                        f"{name}: byte range [{offset}, {offset + size}) is past the end of the shard "
                        f"({shard_size} bytes)",
                        chain=chain_id,
                        path=shard,
                    )
                f.seek(offset)
                out[name] = f.read(size).decode("utf-8")
        return out
