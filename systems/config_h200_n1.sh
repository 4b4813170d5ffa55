# shellcheck shell=bash
# One NVIDIA H200 (141 GB), the project's lent machine: one process, no Slurm.
# With DATADIR pointing at the official data, a single-GPU run of the real benchmark
# (global batch 1 has no reference convergence point: an open-division result); without
# DATADIR, run_and_time.sh runs the embedded default (mini dataset, small model).
# Expected (measured on one H200, 2026-12-05; docs/PERFORMANCE.md): 0.449 s a training
# step at the benchmark's shapes (`bench step`, and the trainer's own step), 84 s an
# evaluation of 180 chains.
#
# Usage, from the repository root:
#   source systems/config_h200_n1.sh && systems/run_torchrun.sh

export NEXP="${NEXP:-1}"
# One training rank and 141 GB: the h200 preset as it is (the whole step as CUDA graphs,
# torch.compile of the glue inside them, no recompute).
export SPEED="${SPEED:-h200}"
export SPEEDUPS="${SPEEDUPS-}"
# shellcheck source-path=SCRIPTDIR source=config_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/config_common.sh"

export DGXSYSTEM="h200_n1"
export DGXNNODES=1
export DGXNGPU=1
export DAP_SIZE="${DAP_SIZE:-1}"
export NUM_ASYNC_VAL_RANKS="${NUM_ASYNC_VAL_RANKS:-0}"
export WALLTIME="${WALLTIME:-04:00:00}"
