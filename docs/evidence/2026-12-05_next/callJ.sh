#!/bin/bash
# Next session, call J (an H200 preferred, ~5 min): the triangle multiplication's four
# projections and gating as one Triton kernel without gradients
# (`trimul_projection_forward_kernel`, built in the sixteenth session, not measured):
# its GPU tests, then the screen beside today's h200 (whose evaluation gates with
# `trimul_gating_forward_kernel`), then the step with it (its recycling iterations).
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 90 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_trimul.py \
  -k "forward_projection_kernel" 2>&1 | tail -1
B=h200+eval_length_buckets=64
timeout 300 python3 -m scalefold.cli bench eval --speed h200 --passes 1 --num-chains 45 \
  --variants $B,$B+trimul_projection_forward_kernel \
  --json $OUT/callJ_eval.json > $OUT/callJ_eval.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callJ_eval.txt | grep -E "^==|warm-up|pass 1|evaluation of|FAILED" | tail -8
timeout 180 python3 -m scalefold.cli bench step --preset mlperf --device cuda --no-flops \
  --warmup 1 --steps 2 --recycles 0,3 \
  --variants h200+trimul_gating_forward_kernel+transition_relu_epilogue,h200+trimul_projection_forward_kernel+transition_relu_epilogue \
  --json $OUT/callJ_step.json > $OUT/callJ_step.txt 2>&1
grep -v -i -E "warn|softmax|split the|important use" $OUT/callJ_step.txt | grep -v "^$" | tail -3
