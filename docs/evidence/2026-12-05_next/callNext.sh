#!/bin/bash
# Call Next (any card, <= 9.5 min): the most useful open check for the card that came, so
# that a session that gets one machine for one call still spends it well.
#   H200: the real 180-chain pass (callRM.sh: the issue's <= 60 s target), unless
#         .devsnap/done_RM_h200 says an earlier call of the session measured it; then the
#         GPU suite (scripts/gpu_tests.sh, its done list carried in .devsnap/).
#   other: the 5-seed training check after the rescale fix (callS2.sh), unless
#         .devsnap/done_S2 exists; then the trained-weights check with plain bf16 beside
#         (callY.sh), then four chains a forward against two (callG.sh).
# Mark what returned a result by touching the done_* file in .devsnap/ between calls.
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
echo "card: $card"
if [[ $card == *H200* ]]; then
  if [[ ! -f .devsnap/done_RM_h200 ]]; then bash .devsnap/callRM.sh
  else source scripts/gpu_env.sh; bash scripts/gpu_tests.sh 560; fi
elif [[ ! -f .devsnap/done_S2 ]]; then bash .devsnap/callS2.sh
elif [[ ! -f .devsnap/done_Y ]]; then bash .devsnap/callY.sh
else bash .devsnap/callG.sh
fi
