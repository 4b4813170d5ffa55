#!/bin/bash
# Next session, call B (an H200 only): the evaluation's baseline on this machine and a
# median chain's profile, with each module's model FLOPs and TFLOP/s beside its time.
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 560 python3 -m scalefold.cli bench eval --speed h200 --passes 1 --profile-length 224 \
  --json $OUT/callB_eval.json > $OUT/callB_eval.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callB_eval.txt | grep -E "pass 1|warm-up|evaluation of|GPU time|model FLOPs|fit" | tail -8
grep -A40 "by module" $OUT/callB_eval.txt | head -42
