# shellcheck shell=bash
# 64 DGX H100 nodes (512 GPUs): 256 replicas of DAP 2, synchronous evaluation.
# A smaller DAP group makes each step slower (more of the sample per GPU) but keeps
# the global batch at 256, the batch with a reference convergence point.
# Wall time: 10 runs of ~25 min, with margin.
# Global batch: (64 x 8 - 0) / 2 x LOCAL_BATCH_SIZE 1 = 256.
# Expected (a prediction: `scalefold plan --cluster systems/dgxh100_n64.json --dap-size 2
# --eval-ranks 0 --global-batch 256 --preset h200 --gpu-ratio 2.22`, 2026-12-05 profile;
# docs/PLAN.md): 0.67 s a step with DAP run eagerly as configured (the eager step per GPU,
# 1.93x the graphed one, x1.15 for an H100: the 2.22), 7.3 min to train. DAP's speed-up
# is the docs/DAP.md cost model; no DAP run on several GPUs has been timed.
#
# Usage, from the repository root:
#   source systems/config_dgxh100_n64.sh
#   DATADIR=/path/to/openfold_data LOGDIR="$PWD/results/${DGXSYSTEM}/strong/openfold" \
#     sbatch -N "$DGXNNODES" -t "$WALLTIME" systems/run.sub

# shellcheck source-path=SCRIPTDIR source=config_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/config_common.sh"

export DGXSYSTEM="dgxh100_n64"
export DGXNNODES=64
export DGXNGPU=8
export DAP_SIZE="${DAP_SIZE:-2}"
export NUM_ASYNC_VAL_RANKS="${NUM_ASYNC_VAL_RANKS:-0}"
export SPEED="${SPEED:-$(default_speed)}"
export SPEEDUPS="${SPEEDUPS-$(multi_rank_speedups)}"
export WALLTIME="${WALLTIME:-05:00:00}"
