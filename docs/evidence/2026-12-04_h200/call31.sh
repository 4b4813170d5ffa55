#!/bin/bash
# call 31: the 180-chain evaluation without and with input_copy_stream (each chain's inputs
# and truth copied on their own stream behind the previous chain), one process
source scripts/gpu_env.sh
timeout 560 python3 -m scalefold.cli bench eval --speed h200 --passes 1 \
  --variants h200,h200+input_copy_stream --json $OUT/call31_eval.json > $OUT/call31_eval.txt 2>&1
grep -v "^\s" $OUT/call31_eval.txt | grep -v -i warn | tail -14
