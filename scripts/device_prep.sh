#!/usr/bin/env bash
# Makes the git-ignored paths a device call carries, on this (CPU) machine, in a fresh
# checkout: each session's checkout holds only what landed, and the lent GPU machine has no
# network. Then a call passes carry [".whlg", ".cache/mini", ".devsnap", ".devck"]
# (".devcache" too where `scripts/gpu_cache.sh pack` sent a compile cache back) and runs, e.g.,
# `bash .devsnap/callNext.sh` (the scripts of docs/evidence/2026-12-05_next).
#   .whlg        wheels the GPU machine lacks (mlperf-logging; pytest-xdist and execnet
#                for scripts/gpu_tests.sh) and Kalign's .deb, for scripts/gpu_env.sh; the
#                machine's Python is 3.12
#   .cache/mini  the embedded mini dataset (`scalefold data build-mini`)
#   .devsnap     the next-session scripts (and GPU-suite done lists), copied from
#                docs/evidence/2026-12-05_next (and 2026-12-08_s38/callBT.sh, callBS.sh)
#   .devck       with --checkpoint: seed 1 of the embedded default trained to its target on
#                this CPU (~7 min), its last checkpoint (~18 MB), for the trained-weights
#                lDDT check (callY.sh, callT.sh) without a training compile on the GPU
# Usage: scripts/device_prep.sh [--checkpoint]   (sets up .venv first if it is missing)
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x .venv/bin/python ]] || ./scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate

if ! ls .whlg/mlperf_logging-*.whl > /dev/null 2>&1; then
    python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux2014_x86_64 -d .whlg mlperf-logging==4.1.68
fi
# pytest-xdist for scripts/gpu_tests.sh's workers (pure Python)
if ! ls .whlg/pytest_xdist-*.whl > /dev/null 2>&1; then
    python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux2014_x86_64 -d .whlg \
        pytest-xdist==3.8.0 execnet==2.1.2
fi
if ! ls .whlg/kalign*.deb > /dev/null 2>&1; then
    (cd .whlg && apt-get download kalign)
fi
[[ -d .cache/mini ]] || scalefold data build-mini .cache/mini
mkdir -p .devsnap
cp docs/evidence/2026-12-05_next/*.sh docs/evidence/2026-12-05_next/*.py .devsnap/
cp docs/evidence/2026-12-08_s38/callBT.sh docs/evidence/2026-12-08_s38/callBS.sh .devsnap/
# a done list there starts a resumable suite; one that earlier calls have extended is kept
for f in docs/evidence/2026-12-05_next/*.txt; do
    [[ -e .devsnap/$(basename "$f") ]] || cp "$f" .devsnap/
done
if [[ ${1:-} == --checkpoint ]] && ! ls .devck/*.pt > /dev/null 2>&1; then
    rm -rf .devck/train && mkdir -p .devck
    scalefold train --seed 1 --checkpoint-every-iters 20 --keep-last-checkpoints 1 \
        --checkpoint-dir .devck/train --output-dir .devck/train/out \
        --mlperf-log .devck/train/out/seed1.log | tail -1
    mv "$(ls -t .devck/train/*.pt | head -1)" .devck/ && rm -rf .devck/train
fi
du -sh .whlg .cache/mini .devsnap $(ls -d .devck 2>/dev/null)
