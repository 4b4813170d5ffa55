#!/usr/bin/env bash
# Sets up the environment (scripts/setup.sh) and runs lint + the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
ruff check implementations tests
# pytest exits 5 when it collects nothing; set -e turns that into a failure.
# Two workers (pytest-xdist), a test file each at a time, files in collection order (the
# `slow` tests first), each worker with its share of the cores as threads
# (tests/conftest.py): on a 2-core machine 55 minutes in one process -> 16.5 minutes
# (2026-12-07, ci112); SCALEFOLD_TEST_WORKERS=0 runs in one process. Each worker peaks
# near 5 GB: more workers need more memory, not only more cores.
python -m pytest -q -p no:cacheprovider --timeout=1800 \
    -n "${SCALEFOLD_TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder "$@"
