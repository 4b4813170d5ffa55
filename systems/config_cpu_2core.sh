# shellcheck shell=bash
# The 2-core CPU development machine: one process, no Slurm, no GPU. Only the embedded
# default (no DATADIR: mini dataset, small model from scratch) is meant to run here.
#
# Usage, from the repository root:
#   source systems/config_cpu_2core.sh && systems/run_torchrun.sh

# One run per call and fp32 (bf16 matmuls are emulated, hence slow, on most CPUs).
export NEXP="${NEXP:-1}"
export PRECISION="${PRECISION:-fp32}"
export SPEED="${SPEED:-eager}"  # the Triton kernels and CUDA graphs need a GPU
export SPEEDUPS="${SPEEDUPS-}"
# shellcheck source-path=SCRIPTDIR source=config_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/config_common.sh"

export DGXSYSTEM="cpu_2core"
export DGXNNODES=1
export DGXNGPU=1  # processes on the node; there is no accelerator
export DAP_SIZE="${DAP_SIZE:-1}"
export NUM_ASYNC_VAL_RANKS="${NUM_ASYNC_VAL_RANKS:-0}"
export WALLTIME="${WALLTIME:-01:00:00}"
