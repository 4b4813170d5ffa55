# shellcheck shell=bash
# 16 DGX H100 nodes (128 GPUs): one sample per GPU, no DAP, synchronous evaluation;
# global batch 128, the other batch size with a reference convergence point
# (~88.7k samples to converge, ~700 steps). NVIDIA's weak-scaling instances of this
# shape ran at about 1.81 s per step. Wall time: 10 runs of ~30 min, with margin.
# Global batch: (16 x 8 - 0) / 1 x LOCAL_BATCH_SIZE 1 = 128.
# Expected (a prediction: `scalefold plan --cluster systems/dgxh100_n16.json --dap-size 1
# --eval-ranks 0 --global-batch 128 --preset h100`, 2026-12-05 profile, whose `h100` step is composed, not
# measured; docs/PLAN.md): 0.56 s a step (0.54 s of compute, 19 ms of gradient all-reduce
# across nodes), 10.2 s an evaluation; 10.2 min to train.
#
# Usage, from the repository root:
#   source systems/config_dgxh100_n16.sh
#   DATADIR=/path/to/openfold_data LOGDIR="$PWD/results/${DGXSYSTEM}/strong/openfold" \
#     sbatch -N "$DGXNNODES" -t "$WALLTIME" systems/run.sub

# shellcheck source-path=SCRIPTDIR source=config_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/config_common.sh"

export DGXSYSTEM="dgxh100_n16"
export DGXNNODES=16
export DGXNGPU=8
export DAP_SIZE="${DAP_SIZE:-1}"
export NUM_ASYNC_VAL_RANKS="${NUM_ASYNC_VAL_RANKS:-0}"
export SPEED="${SPEED:-$(default_speed)}"
export SPEEDUPS="${SPEEDUPS-$(multi_rank_speedups)}"
export WALLTIME="${WALLTIME:-06:00:00}"
