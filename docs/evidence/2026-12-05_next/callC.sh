#!/bin/bash
# Next session, call C (the machine of call B, still warm): 16-residue buckets (the fit
# of call 44: 98.0 s against 101.8 s at 32; twice the warm-up shapes).
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 570 python3 -m scalefold.cli bench eval --speed h200 --eval-length-buckets 16 \
  --passes 1 --json $OUT/callC_eval.json > $OUT/callC_eval.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callC_eval.txt | grep -E "pass 1|warm-up|evaluation of|GPU time|fit" | tail -8
