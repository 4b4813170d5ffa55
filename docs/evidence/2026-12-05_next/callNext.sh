#!/bin/bash
# Call Next (any card, <= 9.5 min): the most useful open check for the card that came, so
# that a session that gets one machine for one call still spends it well.
#   H200: the real 180-chain pass (callRM.sh: the issue's <= 60 s target), unless
#         .devsnap/done_RM_h200 says an earlier call of the session measured it; then the
#         GPU suite (scripts/gpu_tests.sh from an empty done list, .devsnap/gpu_tests_done.txt:
#         the issue asks for the whole suite on an H200).
#   other: nothing. The GPU suite is complete on the H100 list (400 of 400 over the
#         thirty-third to thirty-sixth sessions) and the real pass was timed on an H100 in
#         the thirty-sixth (69.99 s): what is left of the issue needs an H200. The call
#         ends at once: give_back and name nvidia-h200 again later.
# Between calls on an H200: copy the returned gpu_tests_done.txt to .devsnap/, and touch
# .devsnap/done_RM_h200 once callRM's pass has come back.
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
echo "card: $card"
if [[ $card == *H200* ]]; then
  if [[ ! -f .devsnap/done_RM_h200 ]]; then bash .devsnap/callRM.sh
  else source scripts/gpu_env.sh; bash scripts/gpu_tests.sh 560; fi
else
  echo "no open check for this card (issue 18's last two need an H200): give_back, try later"
fi
