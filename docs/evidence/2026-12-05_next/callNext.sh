#!/bin/bash
# Call Next (any card, <= 9.5 min): the most useful open check for the card that came, so
# that a session that gets one machine for one call still spends it well.
#   H200: the real 180-chain pass (callRM.sh: the issue's <= 60 s target), unless
#         .devsnap/done_RM_h200 says an earlier call of the session measured it; then the
#         GPU suite (scripts/gpu_tests.sh from an empty done list, .devsnap/gpu_tests_done.txt:
#         the issue asks for the whole suite on an H200).
#   other: the rest of the GPU suite on that card, resuming the thirty-third session's H100
#         list (.devsnap/gpu_tests_done_h100.txt, 329 of 400 done after the thirty-fourth session), until
#         .devsnap/done_suite_h100 exists; then the real 180-chain pass on that card (callRM.sh).
#         (Four against two a forward (callG.sh) and seeds 5-9 (callS3.sh) ran in the
#         thirty-third session; the 5-seed and trained-weights checks in the thirty-second.)
# Between calls: copy the returned gpu_tests_done.txt over the list the call resumed from
# (.devsnap/gpu_tests_done.txt on an H200, .devsnap/gpu_tests_done_h100.txt otherwise), and
# touch the done_* file in .devsnap/ of what returned a result.
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
echo "card: $card"
if [[ $card == *H200* ]]; then
  if [[ ! -f .devsnap/done_RM_h200 ]]; then bash .devsnap/callRM.sh
  else source scripts/gpu_env.sh; bash scripts/gpu_tests.sh 560; fi
elif [[ ! -f .devsnap/done_suite_h100 ]]; then
  source scripts/gpu_env.sh
  GPU_TESTS_DONE=.devsnap/gpu_tests_done_h100.txt bash scripts/gpu_tests.sh 560
else bash .devsnap/callRM.sh
fi
