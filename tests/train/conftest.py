from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="session")
def mini_dataset(tmp_path_factory):
    """The embedded mini dataset, built once per test session (a few seconds).

    SCALEFOLD_MINI_DIR names one built already (`scalefold data build-mini`), for
    machines without the structure files it is built from (the GPU machine).
    """
    import os
    from pathlib import Path

    from scalefold.data.mini import build_mini

    prebuilt = os.environ.get("SCALEFOLD_MINI_DIR")
    if prebuilt:
        root = Path(prebuilt)
    else:
        root = tmp_path_factory.mktemp("mini")
        build_mini(root)
    split = json.loads((root / "mini_split.json").read_text())
    return root, tuple(split["train"]), tuple(split["validation"])
