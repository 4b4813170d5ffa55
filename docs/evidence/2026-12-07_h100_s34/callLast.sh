#!/bin/bash
# Call Last (thirty-fourth session, ~449 s of device time left): on an H200 the real pass
# (callRM.sh; the call's limit may stop it after the pass), on another card 250 s more of
# the GPU suite on the H100 list.
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
echo "card: $card"
if [[ $card == *H200* ]]; then bash .devsnap/callRM.sh
else
  source scripts/gpu_env.sh
  GPU_TESTS_DONE=.devsnap/gpu_tests_done_h100.txt bash scripts/gpu_tests.sh 250
fi
