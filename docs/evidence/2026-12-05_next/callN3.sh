#!/bin/bash
# Twenty-first session, call N3 (an H200 or H100, ~9 min), first: the 45-chain screen (64-
# residue buckets, one process) of today's h200 beside `ln_projection_forward_kernel`
# (since the twentieth session limited to projections of up to 512 columns) and beside
# it with `attention_gate_epilogue`. Each variant takes ~135 s of warm-up (11 shapes) and
# ~25 s of pass, so three fit one call; call C2 has the gate alone.
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
B=h200+eval_length_buckets=64
L=ln_projection_forward_kernel; G=attention_gate_epilogue
timeout 540 python3 -m scalefold.cli bench eval --speed h200 --passes 1 --num-chains 45 \
  --variants $B,$B+$L,$B+$L+$G --json $OUT/callN3_eval.json > $OUT/callN3_eval.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callN3_eval.txt | grep -E "^==|warm-up|evaluation of|FAILED|Error|^variant|^h200" | tail -14
