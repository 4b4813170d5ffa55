#!/usr/bin/env bash
# MLPerf HPC OpenFold entry point: one timed run of one process (rank).
#
# Launchers start it once per rank (systems/run.sub through srun, systems/run_torchrun.sh
# through torchrun); a plain `./run_and_time.sh` on a fresh machine runs the embedded
# default: it sets up .venv if needed, builds the mini dataset on first use and trains a
# small model from scratch until its target (the README's main command).
#
# Configuration (environment; systems/config_<SYSTEM>.sh sets them):
#   DATADIR   official-layout data root (unset: the embedded mini dataset)
#   CHECKPOINT  initial checkpoint (mlperf_hpc_openfold_resumable_checkpoint.pt)
#   LOGDIR    the results folder (the launchers put the MLPerf logs there)
#   RUNDIR    where this run's own directory goes (default ./runs; never LOGDIR): it is
#             named by system, job (DATESTAMP, set once per job by the launchers), EXP_ID
#             and seed, and locked while the run lives; OUTPUT_DIR names it outright
#   RESUME    1: continue the run in OUTPUT_DIR from its newest checkpoint; a path: from
#             that checkpoint. Unset: a fresh run (a directory holding checkpoints is
#             refused). A resumed run's log says so, and compliance/check.py rejects it
#   CHECKPOINT_EVERY  write a checkpoint every N steps, in the background (default: none)
#   SEED, LOCAL_BATCH_SIZE, DAP_SIZE, BASE_LR, WARMUP_LR_INIT, WARMUP_LR_ITERS, PRECISION,
#   INITIAL_TRAINING_DATALOADER_TYPE, NUM_ASYNC_VAL_RANKS, DGXSYSTEM, DGXNNODES, DGXNGPU,
#   NUM_TRAIN_ITERS, NUM_WORKERS, MLPERF_ORG, MLPERF_STATUS, MLPERF_PLATFORM, EXP_ID
#   PYTHON    the interpreter (default python3; an activated .venv provides it)
#   SPEED     speed preset of `scalefold train --speed` (eager, h200, h100;
#             docs/PERFORMANCE.md); unset for the embedded default: h200 on a CUDA
#             machine, eager on a CPU
#   SPEEDUPS  `scalefold train` flags overriding the preset's fields, e.g.
#             "--no-cuda-graphs --no-compile-glue"
set -euo pipefail
cd "$(dirname "$0")"

if [[ -z "${SCALEFOLD_NO_SETUP:-}" && ! -x .venv/bin/python && -z "${DATADIR:-}" ]]; then
    ./scripts/setup.sh
fi
if [[ -x .venv/bin/python ]]; then
    # shellcheck disable=SC1091
    . .venv/bin/activate
fi

EXP_ID="${EXP_ID:-1}"
DAP_SIZE="${DAP_SIZE:-1}"
NUM_ASYNC_VAL_RANKS="${NUM_ASYNC_VAL_RANKS:-0}"
# Unset SEED: rank 0 draws one and sends it to the others (each rank runs this script).
OUTPUT_DIR="${OUTPUT_DIR:-${RUNDIR:-runs}/train_${DGXSYSTEM:-local}_${DATESTAMP:-$(date +%y%m%d%H%M%S%N)}_${EXP_ID}_${SEED:-random}}"

args=(train --seed "${SEED:-random}" --mlperf-stdout --no-progress
      --num-async-eval-ranks "${NUM_ASYNC_VAL_RANKS}" --dap-size "${DAP_SIZE}"
      --output-dir "${OUTPUT_DIR}")
case "${RESUME:-}" in
    "" | 0) ;;
    1) args+=(--resume) ;;
    *) args+=(--resume "${RESUME}") ;;
esac
[[ -n "${CHECKPOINT_EVERY:-}" ]] && args+=(--checkpoint-every-iters "${CHECKPOINT_EVERY}")
if [[ -n "${DATADIR:-}" ]]; then
    args+=(--data-dir "${DATADIR}" --division "${MLPERF_DIVISION:-closed}"
           --platform "${MLPERF_PLATFORM:-${DGXNNODES:-1}x${DGXSYSTEM:-unknown}}"
           --status "${MLPERF_STATUS:-onprem}")
else
    # The platform text of the embedded default (a fitting check) comes from scalefold.cli.
    args+=(--division open --status "${MLPERF_STATUS:-research}")
    [[ -n "${MLPERF_PLATFORM:-}" ]] && args+=(--platform "${MLPERF_PLATFORM}")
fi
[[ -n "${MLPERF_ORG:-}" ]] && args+=(--org "${MLPERF_ORG}")
[[ -n "${CHECKPOINT:-}" ]] && args+=(--initialize-parameters-from "${CHECKPOINT}")
[[ -n "${LOCAL_BATCH_SIZE:-}" ]] && args+=(--local-batch-size "${LOCAL_BATCH_SIZE}")
[[ -n "${BASE_LR:-}" ]] && args+=(--base-lr "${BASE_LR}")
[[ -n "${WARMUP_LR_INIT:-}" ]] && args+=(--warmup-lr-init "${WARMUP_LR_INIT}")
[[ -n "${WARMUP_LR_ITERS:-}" ]] && args+=(--warmup-lr-iters "${WARMUP_LR_ITERS}")
[[ -n "${PRECISION:-}" ]] && args+=(--precision "${PRECISION}")
[[ -n "${INITIAL_TRAINING_DATALOADER_TYPE:-}" ]] && \
    args+=(--initial-training-dataloader-type "${INITIAL_TRAINING_DATALOADER_TYPE}")
[[ -n "${NUM_TRAIN_ITERS:-}" ]] && args+=(--num-train-iters "${NUM_TRAIN_ITERS}")
[[ -n "${NUM_WORKERS:-}" ]] && args+=(--num-workers "${NUM_WORKERS}")
[[ -n "${SPEED:-}" ]] && args+=(--speed "${SPEED}")
if [[ -n "${SPEEDUPS:-}" ]]; then
    read -r -a speedups <<< "${SPEEDUPS}"
    args+=("${speedups[@]}")
fi

start=$(date +%s)
start_fmt=$(date +%Y-%m-%d\ %r)
echo "STARTING TIMING RUN AT ${start_fmt}"
set +e
# python3: images without a plain `python` (the lent H200s) run it too; .venv has both.
# In the background, so that SIGTERM (Slurm's preemption or time limit) and SIGUSR1 reach
# it through this shell: it stops after the current step and logs run_stop "aborted",
# and the RESULT line below is still printed.
"${PYTHON:-python3}" -m scalefold.cli "${args[@]}" &
child=$!
trap 'kill -TERM "${child}" 2>/dev/null' TERM
trap 'kill -USR1 "${child}" 2>/dev/null' USR1
status=0
while true; do
    wait "${child}"
    status=$?
    # wait returns early (>128) when a trapped signal arrives; the child runs on.
    kill -0 "${child}" 2>/dev/null || break
done
trap - TERM USR1
set -e
end=$(date +%s)
echo "ENDING TIMING RUN AT $(date +%Y-%m-%d\ %r)"
result=$(( end - start ))
seed_used=$(cat "${OUTPUT_DIR}/seed" 2>/dev/null || echo "${SEED:-unknown}")
echo "RESULT,OPENFOLD_HPC,${seed_used},${result},${USER:-$(id -un)},${start_fmt}"
exit "${status}"
