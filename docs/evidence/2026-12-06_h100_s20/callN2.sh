#!/bin/bash
# Twentieth session, call N2 (an H200): call N without its profile, the screen given the
# time four variants take (~105 s each: ~80 s warm-up of 11 shapes, ~22 s pass). Both
# kernels first, so a cut-off call still answers the main question.
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 100 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_ln_linear.py \
  tests/kernels/test_gated_attention.py 2>&1 | tail -3
B=h200+eval_length_buckets=64
L=ln_projection_forward_kernel; G=attention_gate_epilogue
timeout 470 python3 -m scalefold.cli bench eval --speed h200 --passes 1 --num-chains 45 \
  --variants $B,$B+$L+$G,$B+$L,$B+$G --json $OUT/callN_eval.json > $OUT/callN_eval.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callN_eval.txt | grep -E "^==|warm-up|evaluation of|FAILED|Error|^variant|^h200" | tail -16
