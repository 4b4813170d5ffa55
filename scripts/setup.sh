#!/usr/bin/env bash
# Creates .venv (if missing) and installs ScaleFold with its test and oracle extras.
# Safe to run again: pip skips what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --upgrade pip

# torch first, pinned to the CPU build that CPU machines carry on disk; on a GPU machine
# set TORCH_SPEC (e.g. TORCH_SPEC=torch) to keep the installed CUDA build.
python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
python -m pip install -q -e '.[test,oracle]'
# AlphaFold's own JAX code, used only as a test oracle. Its declared dependencies pin a
# CUDA toolchain, so it goes in without them (the oracle extra supplies what it needs).
python -m pip install -q --no-deps alphafold-colabfold==2.3.27 colabfold-kernels==0.9.0
# Real PDB structures (CC0 data, LGPL package) for the embedded mini dataset and the
# tests; only its data files are used, so MDAnalysis itself is not needed.
python -m pip install -q --no-deps mdanalysistests==2.11.0

# Kalign 3 re-aligns template hits (the benchmark's data pipeline requires it).
if ! command -v kalign >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        apt-get install -y -qq kalign >/dev/null 2>&1 \
            || (apt-get update -qq >/dev/null && apt-get install -y -qq kalign >/dev/null) \
            || echo "warning: could not install kalign; template re-alignment tests will fail" >&2
    else
        echo "warning: kalign not found and cannot be installed here (needs root apt-get)" >&2
    fi
fi
