"""Fault injection on copies of the embedded mini dataset.

``mini_root`` builds the mini dataset once per session (or takes SCALEFOLD_MINI_DIR);
``damaged`` copies it under the test's tmp_path, where the test corrupts one file.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from scalefold.data.layout import DataLayout


@pytest.fixture(scope="session")
def mini_root(tmp_path_factory) -> Path:
    prebuilt = os.environ.get("SCALEFOLD_MINI_DIR")
    if prebuilt:
        return Path(prebuilt)
    if importlib.util.find_spec("MDAnalysisTests") is None:
        pytest.skip("the PyPI package mdanalysistests ships the mini dataset's structures")
    if shutil.which("kalign") is None:
        pytest.skip("kalign (Debian package 'kalign') is needed to build the mini dataset")
    from scalefold.data.mini import build_mini

    root = tmp_path_factory.mktemp("mini")
    build_mini(root)
    return root


@dataclass
class DamagedCopy:
    """A private copy of the mini dataset and the ways a test breaks one of its files."""

    root: Path

    @property
    def layout(self) -> DataLayout:
        return DataLayout(self.root)

    @property
    def split(self) -> dict[str, list[str]]:
        return json.loads((self.root / "mini_split.json").read_text())

    # ----------------------------------------------------------------- alignments
    def index(self) -> dict:
        return json.loads(self.layout.super_index.read_text())

    def write_index(self, index: dict) -> None:
        self.layout.super_index.write_text(json.dumps(index))

    def shard(self, chain: str) -> Path:
        return self.layout.alignments_dir / self.index()[chain]["db"]

    def member(self, chain: str, name: str) -> tuple[Path, int, int]:
        """(shard, offset, size) of one alignment file of ``chain``."""
        entry = self.index()[chain]
        for n, offset, size in entry["files"]:
            if n == name:
                return self.layout.alignments_dir / entry["db"], offset, size
        raise KeyError(f"{chain} has no {name}")

    def read_member(self, chain: str, name: str) -> bytes:
        shard, offset, size = self.member(chain, name)
        return shard.read_bytes()[offset : offset + size]

    def overwrite_member(self, chain: str, name: str, data: bytes) -> Path:
        """Overwrite the file's bytes in its shard, in place (``data`` padded or cut to the
        file's size); only the shard changes."""
        shard, offset, size = self.member(chain, name)
        data = (data * (size // max(1, len(data)) + 1))[:size]
        with open(shard, "r+b") as f:
            f.seek(offset)
            f.write(data)
        return shard

    def replace_member(self, chain: str, name: str, data: bytes) -> Path:
        """Store new contents for one file of ``chain`` (appended to its shard, the index
        entry pointed at them), as a preprocessing run that wrote that file would."""
        shard, _, _ = self.member(chain, name)
        offset = shard.stat().st_size
        with open(shard, "ab") as f:
            f.write(data)
        index = self.index()
        index[chain]["files"] = [
            [n, offset, len(data)] if n == name else [n, o, s] for n, o, s in index[chain]["files"]
        ]
        self.write_index(index)
        return shard

    def drop_members(self, chain: str, names: set[str]) -> None:
        index = self.index()
        index[chain]["files"] = [f for f in index[chain]["files"] if f[0] not in names]
        self.write_index(index)

    # ----------------------------------------------------------------- other files
    def truncate(self, path: Path, keep: int) -> Path:
        with open(path, "r+b") as f:
            f.truncate(keep)
        return path

    def set_cell(self, chain: str, column: str, value: str) -> int:
        """Write ``value`` into one cell of chains.csv; returns the row (1-based)."""
        path = self.layout.chains_csv
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        row = int(df.index[df["pdb_chain_id"] == chain][0])
        df.loc[row, column] = value
        df.to_csv(path, index=False)
        return row + 1


@pytest.fixture
def damaged(mini_root, tmp_path) -> DamagedCopy:
    root = tmp_path / "data"
    shutil.copytree(mini_root, root)
    return DamagedCopy(root)
