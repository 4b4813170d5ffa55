#!/usr/bin/env bash
# Makes the git-ignored paths a device call carries, on this (CPU) machine, in a fresh
# checkout: each session's checkout holds only what landed, and the lent GPU machine has no
# network. Then a call passes carry [".whlg", ".cache/mini", ".devsnap"] (".devcache" too
# where `scripts/gpu_cache.sh pack` sent a compile cache back) and runs, e.g.,
# `bash .devsnap/callR2.sh` (the scripts of docs/evidence/2026-12-05_next).
#   .whlg        wheels the GPU machine lacks (mlperf-logging) and Kalign's .deb, for
#                scripts/gpu_env.sh; the machine's Python is 3.12
#   .cache/mini  the embedded mini dataset (`scalefold data build-mini`)
#   .devsnap     the next-session scripts, copied from docs/evidence/2026-12-05_next
# Usage: scripts/device_prep.sh   (sets up .venv first if it is missing)
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x .venv/bin/python ]] || ./scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate

if ! ls .whlg/mlperf_logging-*.whl > /dev/null 2>&1; then
    python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux2014_x86_64 -d .whlg mlperf-logging==4.1.68
fi
if ! ls .whlg/kalign*.deb > /dev/null 2>&1; then
    (cd .whlg && apt-get download kalign)
fi
[[ -d .cache/mini ]] || scalefold data build-mini .cache/mini
mkdir -p .devsnap
cp docs/evidence/2026-12-05_next/*.sh docs/evidence/2026-12-05_next/*.py .devsnap/
du -sh .whlg .cache/mini .devsnap
