#!/bin/bash
# Call L2 (an H200, ~9.5 min; after H, if H's pass is over 60 s): the real 180-chain pass
# of today's h200 with two evaluation lanes (eval_concurrent_chains=2: -3.3% on the
# nineteenth session's 45-chain screen on an H200), its warm-up (44 shapes captured per
# lane) from the carried compile cache. Adopting it trades ~4-5 minutes more
# initialisation (under the rules' 30) and a second graph pool (~25 GiB, evaluation-only
# ranks) for the pass's seconds; compare with call H's pass (same card, another process).
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 570 python3 -m scalefold.cli bench eval --speed h200 --passes 1 \
  --variants h200+eval_concurrent_chains=2 \
  --json $OUT/callL2_eval.json > $OUT/callL2_eval.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callL2_eval.txt | grep -E "^==|warm-up|pass 1|evaluation of|GPU time|FLOPs|fit t|GPUs|Error" | tail -12
