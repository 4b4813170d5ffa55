#!/bin/bash
# NEXP timed OpenFold runs on this host, without Slurm: torchrun starts DGXNGPU copies of
# ./run_and_time.sh (one per GPU; a single process is started directly).
#
#   systems/run_torchrun.sh [systems/config_<SYSTEM>.sh]
#
# With no config it runs one process once (run_and_time.sh's embedded default when
# DATADIR is unset). Results land where systems/run.sub puts them:
#   LOGDIR (default results/<DGXSYSTEM>/strong/openfold)/result_<DATESTAMP>_<i>.txt
#   RAWLOGDIR (default LOGDIR/raw)/run_<DATESTAMP>_<i>.log and compliance_<DATESTAMP>_<i>.out
# run_and_time.sh sees the same variables as under run.sub (DATADIR, LOGDIR, CHECKPOINT,
# SEED, EXP_ID, DATESTAMP, CLEAR_CACHES, MASTER_PORT) plus torchrun's RANK, WORLD_SIZE,
# LOCAL_RANK, MASTER_ADDR. The script fails if a run fails or is not compliant.

set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=launch_common.sh
source "${repo_root}/systems/launch_common.sh"
launch_setup run_torchrun.sh "$@"

if [[ "${DGXNNODES}" != 1 ]]; then
    echo "run_torchrun.sh: ${DGXSYSTEM} spans ${DGXNNODES} nodes; use systems/run.sub" >&2
    exit 2
fi
mkdir -p "${LOGDIR}" "${RAWLOGDIR}"

# Pass DATADIR/CHECKPOINT through only when set: unset DATADIR selects the embedded default.
data_env=()
if [[ -n "${DATADIR:-}" ]]; then
    data_env+=(DATADIR="${DATADIR}"
               CHECKPOINT="${CHECKPOINT:-${DATADIR}/mlperf_hpc_openfold_resumable_checkpoint.pt}")
fi
if (( DGXNGPU > 1 )); then
    # torchrun through the interpreter: its console script is not on every PATH.
    launch=("${PYTHON}" -m torch.distributed.run --standalone --nnodes=1
            --nproc-per-node="${DGXNGPU}" --no-python bash ./run_and_time.sh)
else
    launch=(bash ./run_and_time.sh)
fi

launch_one() {  # I SEED CLEARED
    env "${data_env[@]}" LOGDIR="${LOGDIR}" SEED="$2" EXP_ID="$1" DATESTAMP="${DATESTAMP}" \
        CLEAR_CACHES="$3" MASTER_PORT="${MASTER_PORT}" "${launch[@]}"
}

cd "${repo_root}"
launch_runs run
