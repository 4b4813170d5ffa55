"""Shared fixtures: the mini dataset (built once per session) and small hand-made inputs."""

from __future__ import annotations

import importlib.util
import shutil

import pytest


@pytest.fixture(scope="session")
def mini_layout(tmp_path_factory):
    if importlib.util.find_spec("MDAnalysisTests") is None:
        pytest.skip("the PyPI package mdanalysistests ships the mini dataset's structures")
    if shutil.which("kalign") is None:
        pytest.skip("kalign (Debian package 'kalign') is needed to build the mini dataset")
    from scalefold.data.mini import build_mini

    return build_mini(tmp_path_factory.mktemp("mini"))
