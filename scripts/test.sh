#!/usr/bin/env bash
# Sets up the environment (scripts/setup.sh) and runs lint + the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
ruff check implementations tests
# pytest exits 5 when it collects nothing; set -e turns that into a failure.
python -m pytest -q -p no:cacheprovider --timeout=1800 "$@"
