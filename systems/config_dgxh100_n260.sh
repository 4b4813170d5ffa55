# shellcheck shell=bash
# 260 DGX H100 nodes (2080 H100-SXM5-80GB), the shape of NVIDIA's MLPerf HPC v3.0
# OpenFold entry: 2048 training GPUs in groups of 8 sharing one sample through dynamic
# axial parallelism (DAP 8), and 32 GPUs that evaluate asynchronously, so training
# never waits for the 180-chain validation. About 0.68 s per step was published.
# Wall time: 10 runs of ~4 min initialisation + ~8 min training, with margin.
# Global batch: (260 x 8 - 32) / 8 x LOCAL_BATCH_SIZE 1 = 256.
# Expected (a prediction: `scalefold plan --cluster systems/dgxh100_n260.json --dap-size 8
# --eval-ranks 32 --global-batch 256 --preset h200 --gpu-ratio 2.22`, 2026-12-05 profile;
# docs/PLAN.md): 0.37 s a step with DAP run eagerly as configured, 3.9 min to train (2.5
# min if DAP ran inside CUDA graphs). DAP's speed-up is the docs/DAP.md cost model; no
# DAP run on several GPUs has been timed.
#
# Usage, from the repository root:
#   source systems/config_dgxh100_n260.sh
#   DATADIR=/path/to/openfold_data LOGDIR="$PWD/results/${DGXSYSTEM}/strong/openfold" \
#     sbatch -N "$DGXNNODES" -t "$WALLTIME" systems/run.sub

# shellcheck source-path=SCRIPTDIR source=config_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/config_common.sh"

export DGXSYSTEM="dgxh100_n260"
export DGXNNODES=260
export DGXNGPU=8
export DAP_SIZE="${DAP_SIZE:-8}"
export NUM_ASYNC_VAL_RANKS="${NUM_ASYNC_VAL_RANKS:-32}"
export SPEED="${SPEED:-$(default_speed)}"
export SPEEDUPS="${SPEEDUPS-$(multi_rank_speedups)}"
export WALLTIME="${WALLTIME:-03:00:00}"
