#!/bin/bash
# Next session, call C (the machine of call B, still warm): 16-residue buckets (the fit
# of call 44: 98.0 s against 101.8 s at 32; twice the warm-up shapes), then the whole
# Evoformer and extra-MSA blocks as the evaluation's compile unit (built in the fourteenth
# session, never run on a GPU): each beside call B's h200 on this machine.
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 570 python3 -m scalefold.cli bench eval --speed h200 --passes 1 \
  --variants h200+eval_length_buckets=16,h200+eval_compile_blocks \
  --json $OUT/callC_eval.json > $OUT/callC_eval.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callC_eval.txt | grep -E "^==|pass 1|warm-up|evaluation of|model FLOPs|FAILED" | tail -12
tail -4 $OUT/callC_eval.txt
