#!/bin/bash
# NEXP timed OpenFold runs started by Open MPI's mpirun: DGXNNODES x DGXNGPU copies of
# ./run_and_time.sh, one per GPU, on this host or on the hosts MPI_HOSTS names. The
# counterpart of systems/run_torchrun.sh (same interface, results and checks) for sites
# that launch with MPI; the trainer finds its rank in OMPI_COMM_WORLD_* (ahead of any
# Slurm variables that the processes inherit from an allocation).
#
#   systems/run_mpirun.sh [systems/config_<SYSTEM>.sh]
#
# With no config it runs one process once (run_and_time.sh's embedded default when
# DATADIR is unset). Results land where systems/run.sub puts them:
#   LOGDIR (default results/<DGXSYSTEM>/strong/openfold)/result_<DATESTAMP>_<i>.txt
#   RAWLOGDIR (default LOGDIR/raw)/mpirun_<DATESTAMP>_<i>.log and compliance_<DATESTAMP>_<i>.out
# The script fails if a run fails or is not compliant.
#
# Launch settings (environment):
#   MPI_HOSTS    where the ranks run: a host file (mpirun --hostfile) if it names a file,
#                else a --host list such as "node1:8,node2:8". Unset: this host, or, inside
#                a Slurm allocation, the allocation's nodes (Open MPI reads it itself).
#   MASTER_ADDR  rank 0's host, the rendezvous of torch.distributed. Default 127.0.0.1 on
#                one node; on several, unset means rank 0's host name is broadcast with
#                mpi4py (in the Docker image), or give it here.
#   MASTER_PORT  default 29500.
#   MPIRUN       the launcher (default mpirun); MPIRUN_ARGS: more options for it, e.g.
#                "--mca btl_tcp_if_include ib0".
#   MPIRUN_EXPORT  names of further variables to pass to every rank (-x NAME).
# Every rank gets, with -x (remote nodes see only what -x passes): DATADIR, LOGDIR,
# CHECKPOINT, SEED, EXP_ID, DATESTAMP, CLEAR_CACHES, MASTER_ADDR, MASTER_PORT (as under
# run.sub), the config's variables, PATH, LD_LIBRARY_PATH, PYTHONPATH, and every NCCL_*,
# UCX_*, CUDA_*, TORCH_* and SCALEFOLD_* variable that is set.

set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=launch_common.sh
source "${repo_root}/systems/launch_common.sh"
launch_setup run_mpirun.sh "$@"
: "${MPIRUN:=mpirun}"
: "${MPI_HOSTS:=}"

if (( DGXNNODES > 1 )) && [[ -z "${MPI_HOSTS}" && -z "${SLURM_JOB_ID:-}" ]]; then
    echo "run_mpirun.sh: ${DGXSYSTEM} spans ${DGXNNODES} nodes; set MPI_HOSTS (a host file or \"node1:${DGXNGPU},node2:${DGXNGPU},...\") or run inside a Slurm allocation" >&2
    exit 2
fi
if (( DGXNNODES == 1 )) && [[ -z "${MASTER_ADDR:-}" && -z "${MPI_HOSTS}" ]]; then
    MASTER_ADDR=127.0.0.1  # every rank on this host: no need to learn rank 0's host
fi
if ! command -v "${MPIRUN}" > /dev/null; then
    echo "run_mpirun.sh: ${MPIRUN} not found (install Open MPI, or set MPIRUN)" >&2
    exit 2
fi
mkdir -p "${LOGDIR}" "${RAWLOGDIR}"
LOGDIR=$(cd "${LOGDIR}" && pwd)
RAWLOGDIR=$(cd "${RAWLOGDIR}" && pwd)

# --- what mpirun is told: placement, and the environment of every rank ------------------
mpi_args=(-np "$(( DGXNNODES * DGXNGPU ))" --bind-to none)
if [[ -n "${MPI_HOSTS}" ]]; then
    if [[ -f "${MPI_HOSTS}" ]]; then
        mpi_args+=(--hostfile "${MPI_HOSTS}")
    else
        mpi_args+=(--host "${MPI_HOSTS}")
    fi
fi
if [[ "$(id -u)" == 0 && -z "${OMPI_ALLOW_RUN_AS_ROOT:-}" ]]; then
    mpi_args+=(--allow-run-as-root)  # containers run as root; Open MPI refuses it unasked
fi
if [[ -n "${MPIRUN_ARGS:-}" ]]; then
    read -r -a extra_args <<< "${MPIRUN_ARGS}"
    mpi_args+=("${extra_args[@]}")
fi

# Variables run_and_time.sh reads (systems/config_*.sh and its own documentation).
passed_vars=(DGXSYSTEM DGXNNODES DGXNGPU LOCAL_BATCH_SIZE DAP_SIZE NUM_ASYNC_VAL_RANKS
             BASE_LR WARMUP_LR_INIT WARMUP_LR_ITERS PRECISION INITIAL_TRAINING_DATALOADER_TYPE
             NUM_TRAIN_ITERS NUM_WORKERS SPEED SPEEDUPS PYTHON RUNDIR OUTPUT_DIR RESUME
             CHECKPOINT_EVERY MLPERF_ORG MLPERF_STATUS MLPERF_PLATFORM MLPERF_DIVISION
             OMP_NUM_THREADS PATH LD_LIBRARY_PATH PYTHONPATH)
while read -r name; do
    passed_vars+=("${name}")
done < <(compgen -e | grep -E '^(NCCL|UCX|CUDA|TORCH|SCALEFOLD)_' || true)
if [[ -n "${MPIRUN_EXPORT:-}" ]]; then
    read -r -a more_vars <<< "${MPIRUN_EXPORT}"
    passed_vars+=("${more_vars[@]}")
fi
env_args=()
for name in "${passed_vars[@]}"; do
    # Only what is set: the value is written out, so that a variable the config set
    # without exporting it reaches the ranks too.
    if [[ -n "${!name+set}" ]]; then
        env_args+=(-x "${name}=${!name}")
    fi
done
if [[ -n "${MASTER_ADDR:-}" ]]; then
    env_args+=(-x "MASTER_ADDR=${MASTER_ADDR}")
fi
# DATADIR/CHECKPOINT only when set: unset DATADIR selects the embedded default.
if [[ -n "${DATADIR:-}" ]]; then
    env_args+=(-x "DATADIR=${DATADIR}"
               -x "CHECKPOINT=${CHECKPOINT:-${DATADIR}/mlperf_hpc_openfold_resumable_checkpoint.pt}")
fi

echo "run_mpirun.sh: ${DGXSYSTEM}: ${DGXNNODES} nodes x ${DGXNGPU} ranks, NEXP=${NEXP}, LOGDIR=${LOGDIR}"

launch_one() {  # I SEED CLEARED
    "${MPIRUN}" "${mpi_args[@]}" "${env_args[@]}" -x "LOGDIR=${LOGDIR}" -x "SEED=$2" \
        -x "EXP_ID=$1" -x "DATESTAMP=${DATESTAMP}" -x "CLEAR_CACHES=$3" \
        -x "MASTER_PORT=${MASTER_PORT}" bash "${repo_root}/run_and_time.sh"
}

cd "${repo_root}"
launch_runs mpirun
