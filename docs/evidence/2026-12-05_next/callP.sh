#!/bin/bash
# Next session, call P (~5 min, after call K): the by-kernel and by-module profile of a
# 224-residue chain of today's h200 evaluation (add call K's winners with --variants).
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 400 python3 -m scalefold.cli bench eval --speed h200 --passes 1 --num-chains 45 \
  --eval-length-buckets 64 --profile-length 224 \
  --json $OUT/callP_eval.json > $OUT/callP_eval.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callP_eval.txt | grep -A60 "^kernel family" | head -80
