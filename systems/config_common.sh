# shellcheck shell=bash
# Settings shared by every system config; a config_<SYSTEM>.sh sources this file first.
# Each variable keeps a value already in the environment, so one run can override it:
#   BASE_LR=2e-3 source systems/config_dgxh100_n260.sh
#
# Free hyper-parameters of the closed division (BENCHMARK_RULES.md): NVIDIA's MLPerf HPC
# v3.0 run on 260 DGX H100 nodes logged lr 1e-3, warm-up from 1e-5 over 0 steps, bf16 and
# the priority-queue loader; the reference convergence points were measured with the same
# learning-rate values.
export BASE_LR="${BASE_LR:-1e-3}"
export WARMUP_LR_INIT="${WARMUP_LR_INIT:-1e-5}"
export WARMUP_LR_ITERS="${WARMUP_LR_ITERS:-0}"
export PRECISION="${PRECISION:-bf16}"
export INITIAL_TRAINING_DATALOADER_TYPE="${INITIAL_TRAINING_DATALOADER_TYPE:-InitialTrainingDataloaderPQ}"
# One sample per training replica; the global batch is
#   (DGXNNODES * DGXNGPU - NUM_ASYNC_VAL_RANKS) / DAP_SIZE * LOCAL_BATCH_SIZE.
export LOCAL_BATCH_SIZE="${LOCAL_BATCH_SIZE:-1}"
# A time-to-train result needs 10 runs (systems/run.sub runs NEXP of them per job).
export NEXP="${NEXP:-10}"
# Speed-ups (docs/PERFORMANCE.md, H200 step benchmark): Triton attention (dq kernel) and
# LayerNorm, bf16 LayerNorm outputs (bf16 residual streams), fused Adam, matvec bias
# gradients, channels-first triangle multiplication with its in-place output LayerNorm,
# fused gates, the outer product mean's projection kernel, and the outer product mean
# recomputed in backward (what fits an H100's 80 GB: 70.3 GiB with graphs and compile,
# 76.8 GiB without the recompute, session 4). CUDA graphs and --compile-glue (which pays
# only inside graphs) are added by single-rank configs only: the multi-rank form
# (--grad-sync flat --cuda-graphs) has run in `bench dp` on two H200s (98% weak scaling,
# PERFORMANCE "First multi-GPU runs") but not yet in a training run, and DAP's
# collectives are not captured.
export SPEEDUPS="${SPEEDUPS---attention triton --layer-norm triton --layer-norm-output compute --fused-optimizer --matvec-bias-grad --trimul-channel-first --trimul-norm-kernel --attention-dq-kernel --attention-store-ds --fused-gate --opm-projection-kernel --recompute-outer-product}"
