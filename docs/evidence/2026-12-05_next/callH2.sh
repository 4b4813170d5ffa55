#!/bin/bash
# The real 180-chain pass of today's h200 alone (no lDDT check: it fits ~8 min of device
# time), on an H200.
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 440 python3 -m scalefold.cli bench eval --speed h200 --passes 1 \
  --json $OUT/callH2_eval.json > $OUT/callH2_eval.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callH2_eval.txt | grep -E "^==|warm-up|pass 1|evaluation of|GPU time|FLOPs|fit t|GPUs|Error|^ +[0-9]+-[0-9]+ " | tail -20
