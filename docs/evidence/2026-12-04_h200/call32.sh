#!/bin/bash
# call 32: the 180-chain evaluation with the glue compiled once with dynamic shapes
source scripts/gpu_env.sh
timeout 360 python3 -m scalefold.cli bench eval --speed h200 --passes 1 \
  --variants h200+input_copy_stream+eval_compile_glue --json $OUT/call32_eval.json > $OUT/call32_eval.txt 2>&1
grep -v "^\s" $OUT/call32_eval.txt | grep -v -i warn | tail -8
