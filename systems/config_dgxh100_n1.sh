# shellcheck shell=bash
# One DGX H100 (8 GPUs): a development and smoke-test configuration. Its global batch
# of 8 has no reference convergence point, so the package checker's RCP test would
# not accept a closed-division result from it; use it to validate a node, the data
# and the container before a large allocation. NEXP defaults to 1 here.
# Global batch: (1 x 8 - 0) / 1 x LOCAL_BATCH_SIZE 1 = 8.
# Expected (a prediction of `scalefold plan`, 2026-12-05 profile; docs/PLAN.md): about
# 0.54 s a step (the `h100` step composed from the H200's `h200` step, x1.15 for an H100; one flat
# all-reduce over NVLink adds ~2 ms; the `h100` step on one H100 measured 0.538 s, 2026-12-05). Global batch 8 has no reference convergence point,
# so no time to train is predicted.
#
# Usage, from the repository root:
#   source systems/config_dgxh100_n1.sh
#   DATADIR=/path/to/openfold_data LOGDIR="$PWD/results/${DGXSYSTEM}/strong/openfold" \
#     sbatch -N "$DGXNNODES" -t "$WALLTIME" systems/run.sub

export NEXP="${NEXP:-1}"
# shellcheck source-path=SCRIPTDIR source=config_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/config_common.sh"

export DGXSYSTEM="dgxh100_n1"
export DGXNNODES=1
export DGXNGPU=8
export DAP_SIZE="${DAP_SIZE:-1}"
export NUM_ASYNC_VAL_RANKS="${NUM_ASYNC_VAL_RANKS:-0}"
export SPEED="${SPEED:-$(default_speed)}"
export SPEEDUPS="${SPEEDUPS-$(multi_rank_speedups)}"
export WALLTIME="${WALLTIME:-08:00:00}"
