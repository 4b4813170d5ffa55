#!/bin/bash
# Screening of the evaluation levers (45 chains, 64-residue buckets: 11 shapes to warm up
# per variant), one process; then the GPU tests of trimul_gating_forward_kernel.
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 60 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_trimul.py \
  -k "forward_gating_kernel" 2>&1 | tail -2
B=h200+eval_length_buckets=64
timeout 520 python3 -m scalefold.cli bench eval --speed h200 --passes 1 --num-chains 45 \
  --variants $B,$B+trimul_gating_forward_kernel,$B+transition_relu_epilogue,$B+eval_compile_blocks+transition_relu_epilogue+trimul_gating_forward_kernel,$B+eval_compile_blocks \
  --json $OUT/call2_eval.json > $OUT/call2_eval.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/call2_eval.txt | grep -E "^==|evaluation of|model FLOPs|FAILED" | tail -20
tail -9 $OUT/call2_eval.txt
