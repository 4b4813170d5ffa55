#!/bin/bash
# Call Next (any card, <= 9.5 min): the most useful open check for the card that came, so
# that a session that gets one machine for one call still spends it well.
#   H200: the real 180-chain pass (callRM.sh: the issue's <= 60 s target), unless
#         .devsnap/done_RM_h200 says an earlier call of the session measured it; then the
#         GPU suite (scripts/gpu_tests.sh, its done list carried in .devsnap/).
#   other: four chains a forward against two side by side (callG.sh), unless
#         .devsnap/done_G exists; then five more seeds of h200 and fp32 (callS3.sh),
#         unless done_S3; then the real 180-chain pass on that card (callRM.sh).
#         (The 5-seed check after the rescale fix (callS2.sh) and the trained-weights
#         check (callY.sh) passed in the thirty-second session.)
# Mark what returned a result by touching the done_* file in .devsnap/ between calls.
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
echo "card: $card"
if [[ $card == *H200* ]]; then
  if [[ ! -f .devsnap/done_RM_h200 ]]; then bash .devsnap/callRM.sh
  else source scripts/gpu_env.sh; bash scripts/gpu_tests.sh 560; fi
elif [[ ! -f .devsnap/done_G ]]; then bash .devsnap/callG.sh
elif [[ ! -f .devsnap/done_S3 ]]; then bash .devsnap/callS3.sh
else bash .devsnap/callRM.sh
fi
