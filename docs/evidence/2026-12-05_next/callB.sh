#!/bin/bash
# Next session, call B (an H200 only): today's h200 evaluation (16-residue buckets, never
# measured on an H200: the planner's profile still holds the 32-residue pass) beside the
# ReLU in the transitions' matmul epilogue, in one process.
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 580 python3 -m scalefold.cli bench eval --speed h200 --passes 1 \
  --variants h200,h200+transition_relu_epilogue \
  --json $OUT/callB_eval.json > $OUT/callB_eval.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callB_eval.txt | grep -E "^==|pass 1|warm-up|evaluation of|model FLOPs|FAILED" | tail -12
tail -4 $OUT/callB_eval.txt
