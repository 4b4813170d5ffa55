# shellcheck shell=bash
# What the one-host launchers (run_torchrun.sh, run_mpirun.sh) share: the config argument,
# the defaults, distinct seeds, and the NEXP loop with its log collection and compliance
# check. Sourced by them; `launch_runs` calls the launcher's own `launch_one`.

# launch_setup NAME "$@": source the optional config, fill in the defaults.
launch_setup() {
    LAUNCHER_NAME=$1
    shift
    if [[ $# -gt 1 ]]; then
        echo "usage: ${LAUNCHER_NAME} [systems/config_<SYSTEM>.sh]" >&2
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
}

# launch_runs PREFIX: NEXP runs with seeds SEED, SEED+1, ... (a random base when SEED is
# unset). For each, `launch_one I SEED CLEARED` (the launcher's) writes the run's output
# to stdout; it goes to RAWLOGDIR/PREFIX_<DATESTAMP>_<i>.log, its :::MLLOG lines to
# LOGDIR/result_<DATESTAMP>_<i>.txt, then through the compliance checker. Exits 1 if a run
# failed or is not compliant.
launch_runs() {
    local prefix=$1 seed_base seed raw_log result report cleared i
    local failed_runs=0 noncompliant_runs=0
    if [[ -n "${SEED:-}" ]]; then
        seed_base="${SEED}"
    else
        seed_base=$(( $(od -An -N4 -tu4 /dev/urandom | tr -d ' ') % 1000000000 ))
    fi
    for (( i = 1; i <= NEXP; i++ )); do
        seed=$(( seed_base + i - 1 ))
        raw_log="${RAWLOGDIR}/${prefix}_${DATESTAMP}_${i}.log"
        result="${LOGDIR}/result_${DATESTAMP}_${i}.txt"
        # Dropping the page cache needs root; without it the run logs cache_clear=false.
        # (This host only: clear other hosts beforehand and set CLEAR_CACHES=0 to log
        # false, or run under systems/run.sub, which clears every node.)
        cleared=0
        if [[ "${CLEAR_CACHES:-1}" == 1 ]] && sync && { echo 3 > /proc/sys/vm/drop_caches; } 2>/dev/null; then
            cleared=1
        fi
        echo "${LAUNCHER_NAME}: run ${i}/${NEXP}, seed ${seed}, log ${raw_log}"
        if launch_one "${i}" "${seed}" "${cleared}" 2>&1 | tee "${raw_log}"; then
            :
        else
            echo "${LAUNCHER_NAME}: run ${i} exited with an error" >&2
            failed_runs=$(( failed_runs + 1 ))
        fi
        grep -a ':::MLLOG ' "${raw_log}" | sed 's/^.*:::MLLOG /:::MLLOG /' > "${result}" || true

        if [[ "${CHECK_COMPLIANCE}" == 1 ]]; then
            report="${RAWLOGDIR}/compliance_${DATESTAMP}_${i}.out"
            if "${PYTHON}" -m mlperf_logging.compliance_checker --usage hpc \
                    --ruleset "${MLPERF_RULESET}" --log_output /dev/null "${result}" > "${report}" 2>&1; then
                echo "${LAUNCHER_NAME}: run ${i}: compliance checker passed (${report})"
            else
                echo "${LAUNCHER_NAME}: run ${i}: compliance checker FAILED (${report})" >&2
                noncompliant_runs=$(( noncompliant_runs + 1 ))
            fi
        fi
    done
    echo "${LAUNCHER_NAME}: ${NEXP} runs, ${failed_runs} failed, ${noncompliant_runs} not compliant"
    if (( failed_runs > 0 || noncompliant_runs > 0 )); then
        exit 1
    fi
}
