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
# Speed-ups: a preset of `SpeedConfig` (`scalefold train --speed`, docs/PERFORMANCE.md).
# SPEEDUPS holds `scalefold train` flags that override the preset's fields. Each config
# sets both after its DAP_SIZE, with `default_speed` and `multi_rank_speedups`.

# The preset for an 80 GB H100. Without DAP, `h100`: the `h200` form with the outer
# product mean recomputed (70.0 GiB on an H100) and, on ranks that also train, evaluation
# without its CUDA graphs, whose pool (13.6 GiB reserved) would not fit beside the step;
# asynchronous evaluation ranks (NUM_ASYNC_VAL_RANKS) hold no step and keep h200's
# evaluation levers (`eval_plain_beside_training`). With DAP a group shares one sample's
# activations (~42 GiB a GPU at DAP 2, ~15 GiB at DAP 8: docs/PLAN.md's memory model from
# the measured DAP 2 run), so the `h200` form fits with its evaluation graphs and warm-up,
# which the asynchronous evaluation ranks need to keep up (docs/PERFORMANCE.md).
default_speed() {
    if (( ${DAP_SIZE:-1} > 1 )); then
        echo "h200"
    else
        echo "h100"
    fi
}

# Data parallelism alone keeps the preset's CUDA graphs, the gradients averaged by one
# flat all-reduce between the backward graph and the update graph (the trainer's
# multi-rank path, run through torchrun on one H200 and over gloo on CPUs). DAP runs the
# step without graphs (and without torch.compile: the glue's measured slower outside them,
# the structure-module layer's is measured only inside them) until DAP in graphs is
# measured on several GPUs.
multi_rank_speedups() {
    if (( ${DAP_SIZE:-1} > 1 )); then
        echo "--no-cuda-graphs --no-compile-glue --no-compile-structure-module"
    else
        echo "--grad-sync flat"
    fi
}
