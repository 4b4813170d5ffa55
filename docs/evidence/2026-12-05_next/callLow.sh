#!/bin/bash
# Call Low (H200 only; for a session with < ~750 s of device time left): the screen first
# (6 chains, 2 passes, no warm-up: the H200/H100 ratio on today's code, ~100 s, which also
# fills the compile cache the real pass's warm-up then reuses), then the real 180-chain
# pass of `h200` with what the call's limit leaves. Files come back even if the limit cuts
# the pass. On any other card: ends at once.
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
echo "card: $card"
[[ $card == *H200* ]] || { echo "not an H200: give_back"; exit 0; }
source scripts/gpu_env.sh  # callRM.sh sources it again: its wheels install in seconds
T0=$(date +%s)
timeout -k 5 200 python3 -m scalefold.cli bench eval --speed h200 --passes 2 --no-eval-warm-up \
  --lengths 96,160,224,288,352,704 --json $OUT/callLow_screen.json > $OUT/callLow_screen.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callLow_screen.txt | grep -E "pass [12]|Error|^ +[0-9]+-[0-9]+ " | tail -8
echo "screen done at $(( $(date +%s) - T0 )) s"
# callRM.sh's pass first (then its lDDT check and screen, which the limit will mostly cut)
bash .devsnap/callRM.sh
