#!/bin/bash
# The GPU test suite, resumable over several device calls (a call has at most 10 minutes;
# the suite takes longer, most of it Triton and inductor compiling).
#
# Usage, inside a device call, after `source scripts/gpu_env.sh`:
#   bash scripts/gpu_tests.sh SECONDS [FILE_OR_NODE ...]
# runs the tests that need a GPU (SCALEFOLD_GPU_TESTS=1: tests/conftest.py picks them;
# or the files and node ids given) for at most SECONDS, deselecting the node ids that
# .devsnap/gpu_tests_done.txt lists (an earlier call's result, carried with .devsnap).
# It writes to $OUT:
#   gpu_tests.txt          pytest's -v output of this call
#   gpu_tests_done.txt     the done list: the carried one plus this call's passed and
#                          skipped tests, and any test that killed the process
#   gpu_tests_failed.txt   this call's failures and errors (not in the done list: the next
#                          call runs them again), and the test that killed the process
# Then, on the development machine, copy gpu_tests_done.txt to .devsnap/ for the next
# call. Without $OUT (a GPU machine of one's own) the files go to .gpu_tests/ and the next
# run resumes from its list (GPU_TESTS_DONE names another; delete it to start over).
# The last line printed says whether the suite is complete.
# SCALEFOLD_GPU_TEST_WORKERS (default 4): pytest-xdist workers sharing the one GPU, a test
# file each at a time; the suite is mostly Triton's and inductor's compiles, which run on
# the host's cores (16 on a lent machine), and no GPU test is timed. 0, or no xdist
# importable (scripts/device_prep.sh carries its wheels in .whlg), runs in one process.
set -uo pipefail
limit=${1:?usage: bash scripts/gpu_tests.sh SECONDS [FILE_OR_NODE ...]}
shift
if [ $# -gt 0 ]; then
  targets=("$@"); gpu_only=0
else
  targets=(tests); gpu_only=1
fi
if [ -n "${OUT:-}" ]; then  # a device call: the done list comes carried in .devsnap/
  done_in=${GPU_TESTS_DONE:-.devsnap/gpu_tests_done.txt}
else                         # a GPU machine of one's own: the last run's list
  OUT=.gpu_tests; mkdir -p "$OUT"; done_in=${GPU_TESTS_DONE:-$OUT/gpu_tests_done.txt}
fi
done_out=$OUT/gpu_tests_done.txt
if [ -f "$done_in" ]; then
  [ "$done_in" -ef "$done_out" ] || cp "$done_in" "$done_out"
else
  : > "$done_out"
fi
echo "done before this call: $(grep -cv '^#' "$done_out") tests"
workers=${SCALEFOLD_GPU_TEST_WORKERS:-4}
xdist=()
if [ "$workers" -gt 0 ] && python3 -c "import xdist" 2> /dev/null; then
  xdist=(-n "$workers" --dist loadfile --no-loadscope-reorder)
fi
echo "pytest ${xdist[*]:-(one process)}"
SCALEFOLD_GPU_TESTS=$gpu_only SCALEFOLD_TESTS_DONE=$done_out timeout -k 20 "$limit" \
  python3 -m pytest -v -p no:cacheprovider "${xdist[@]}" "${targets[@]}" > "$OUT/gpu_tests.txt" 2>&1
rc=$?
[ "$rc" -eq 137 ] && [ "$SECONDS" -ge "$limit" ] && rc=124  # -k's kill after the limit's TERM
# OUTCOME<tab>NODE from "NODE OUTCOME (reason) [ P%]" (one process) and "[gwN] [ P%] OUTCOME NODE"
# (xdist); node ids may hold spaces (parametrized ids)
outcome='PASSED|SKIPPED|XFAIL|XPASS|FAILED|ERROR'
results=$(sed -nE \
  -e "s/^\[gw[0-9]+\] \[ *[0-9]+%\] ($outcome) (tests\/.*::.*[^ ]) *\$/\1\t\2/p" \
  -e "s/^(tests\/.*::.*[^ ]) ($outcome)( \(.*\))?( +\[ *[0-9]+%\])? *\$/\2\t\1/p" \
  "$OUT/gpu_tests.txt")
echo "$results" | awk -F'\t' '$1 ~ /PASSED|SKIPPED|XFAIL|XPASS/ {print $2}' | sort -u >> "$done_out"
echo "$results" | awk -F'\t' '$1 ~ /FAILED|ERROR/ {print $2}' | sort -u > "$OUT/gpu_tests_failed.txt"
# A test that killed the process (an abort, not an exception) would stop every later call
# at the same place: record it as done, and as failed (one process: the last node printed,
# without what the crash wrote after it; a parametrized id ends at its last ']').
last=$(grep -E '^tests/.*::' "$OUT/gpu_tests.txt" | tail -1 \
  | sed -E "s/ ($outcome)( \(.*\))?( +\[ *[0-9]+%\])? *\$//" \
  | sed -E 's/^(tests\/[^ []+::[^ []+\[.*\]).*$/\1/; t; s/^(tests\/[^ ]+::[^ ]+).*$/\1/')
if [ "$rc" -ne 0 ] && [ "$rc" -ne 1 ] && [ "$rc" -ne 124 ] && [ -n "$last" ] \
    && ! grep -qxF "$last" "$done_out" && ! grep -qxF "$last" "$OUT/gpu_tests_failed.txt"; then
  echo "# killed the process (exit $rc)" >> "$done_out"
  echo "$last" >> "$done_out"
  echo "$last (killed the process, exit $rc)" >> "$OUT/gpu_tests_failed.txt"
fi
grep -E "^(FAILED|ERROR) " "$OUT/gpu_tests.txt" | head -20
tail -1 "$OUT/gpu_tests.txt"; echo
n_pass=$(echo "$results" | grep -c '^PASSED')
n_fail=$(grep -c . "$OUT/gpu_tests_failed.txt")
case $rc in
  0|5) state="complete" ;;
  1) state="complete, with failures" ;;
  124) state="not complete: stopped at the time limit (carry gpu_tests_done.txt on)" ;;
  *) state="not complete: pytest exited $rc (carry gpu_tests_done.txt on)" ;;
esac
echo "gpu tests: $n_pass passed, $n_fail failed this call; $(grep -cv '^#' "$done_out") done in all; $state"
