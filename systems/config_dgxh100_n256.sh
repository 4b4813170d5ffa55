# shellcheck shell=bash
# 256 DGX H100 nodes (2048 GPUs): 256 replicas of DAP 8 and synchronous evaluation
# (every rank evaluates its share of the validation set every 40 steps).
# Wall time: 10 runs of ~4 min initialisation + ~10 min training, with margin.
# Global batch: (256 x 8 - 0) / 8 x LOCAL_BATCH_SIZE 1 = 256.
# Expected (a prediction: `scalefold plan --cluster systems/dgxh100_n256.json --dap-size 8
# --eval-ranks 0 --global-batch 256 --preset h200 --gpu-ratio 2.22`, 2026-12-05 profile;
# docs/PLAN.md): 0.37 s a step with DAP run eagerly as configured, 4.7 min to train. DAP's
# speed-up is the docs/DAP.md cost model; no DAP run on several GPUs has been timed.
#
# Usage, from the repository root:
#   source systems/config_dgxh100_n256.sh
#   DATADIR=/path/to/openfold_data LOGDIR="$PWD/results/${DGXSYSTEM}/strong/openfold" \
#     sbatch -N "$DGXNNODES" -t "$WALLTIME" systems/run.sub

# shellcheck source-path=SCRIPTDIR source=config_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/config_common.sh"

export DGXSYSTEM="dgxh100_n256"
export DGXNNODES=256
export DGXNGPU=8
export DAP_SIZE="${DAP_SIZE:-8}"
export NUM_ASYNC_VAL_RANKS="${NUM_ASYNC_VAL_RANKS:-0}"
export SPEED="${SPEED:-$(default_speed)}"
export SPEEDUPS="${SPEEDUPS-$(multi_rank_speedups)}"
export WALLTIME="${WALLTIME:-03:30:00}"
