"""Fixtures for the loss tests: real chains from tests/data."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def real_chains():
    # Imported here, not at module level, so that tests needing no structure files (and
    # hence no biotite) still collect.
    from ..data.structures import load_all

    return load_all()
