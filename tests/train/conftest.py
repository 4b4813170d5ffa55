from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="session")
def mini_dataset(tmp_path_factory):
    """The embedded mini dataset, built once per test session (a few seconds)."""
    from scalefold.data.mini import build_mini

    root = tmp_path_factory.mktemp("mini")
    build_mini(root)
    split = json.loads((root / "mini_split.json").read_text())
    return root, tuple(split["train"]), tuple(split["validation"])
