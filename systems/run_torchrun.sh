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
if [[ $# -gt 1 ]]; then
    echo "usage: $0 [systems/config_<SYSTEM>.sh]" >&2
    exit 2
fi
if [[ $# -eq 1 ]]; then
    # shellcheck source=/dev/null
    source "$1"
fi

: "${DGXSYSTEM:=local}"
: "${DGXNNODES:=1}"
: "${DGXNGPU:=1}"
: "${NEXP:=1}"
: "${LOGDIR:=${repo_root}/results/${DGXSYSTEM}/strong/openfold}"
: "${RAWLOGDIR:=${LOGDIR}/raw}"
: "${CHECK_COMPLIANCE:=1}"
: "${MLPERF_RULESET:=3.0.0}"
: "${PYTHON:=python3}"
: "${MASTER_PORT:=29500}"
: "${DATESTAMP:=$(date +'%y%m%d%H%M%S%N')}"

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

if [[ -n "${SEED:-}" ]]; then
    seed_base="${SEED}"
else
    seed_base=$(( $(od -An -N4 -tu4 /dev/urandom | tr -d ' ') % 1000000000 ))
fi

failed_runs=0
noncompliant_runs=0
cd "${repo_root}"
for (( i = 1; i <= NEXP; i++ )); do
    seed=$(( seed_base + i - 1 ))
    raw_log="${RAWLOGDIR}/run_${DATESTAMP}_${i}.log"
    result="${LOGDIR}/result_${DATESTAMP}_${i}.txt"
    # Dropping the page cache needs root; without it the run logs cache_clear=false.
    cleared=0
    if [[ "${CLEAR_CACHES:-1}" == 1 ]] && sync && { echo 3 > /proc/sys/vm/drop_caches; } 2>/dev/null; then
        cleared=1
    fi
    run_env=("${data_env[@]}" LOGDIR="${LOGDIR}" SEED="${seed}" EXP_ID="${i}"
             DATESTAMP="${DATESTAMP}" CLEAR_CACHES="${cleared}" MASTER_PORT="${MASTER_PORT}")
    if (( DGXNGPU > 1 )); then
        # torchrun through the interpreter: its console script is not on every PATH.
        launch=("${PYTHON}" -m torch.distributed.run --standalone --nnodes=1
                --nproc-per-node="${DGXNGPU}" --no-python bash ./run_and_time.sh)
    else
        launch=(bash ./run_and_time.sh)
    fi
    echo "run_torchrun.sh: run ${i}/${NEXP}, seed ${seed}, log ${raw_log}"
    if env "${run_env[@]}" "${launch[@]}" 2>&1 | tee "${raw_log}"; then
        :
    else
        echo "run_torchrun.sh: run ${i} exited with an error" >&2
        failed_runs=$(( failed_runs + 1 ))
    fi
    grep -a ':::MLLOG ' "${raw_log}" | sed 's/^.*:::MLLOG /:::MLLOG /' > "${result}" || true

    if [[ "${CHECK_COMPLIANCE}" == 1 ]]; then
        report="${RAWLOGDIR}/compliance_${DATESTAMP}_${i}.out"
        if "${PYTHON}" -m mlperf_logging.compliance_checker --usage hpc \
                --ruleset "${MLPERF_RULESET}" --log_output /dev/null "${result}" > "${report}" 2>&1; then
            echo "run_torchrun.sh: run ${i}: compliance checker passed (${report})"
        else
            echo "run_torchrun.sh: run ${i}: compliance checker FAILED (${report})" >&2
            noncompliant_runs=$(( noncompliant_runs + 1 ))
        fi
    fi
done

echo "run_torchrun.sh: ${NEXP} runs, ${failed_runs} failed, ${noncompliant_runs} not compliant"
if (( failed_runs > 0 || noncompliant_runs > 0 )); then
    exit 1
fi
