#!/bin/bash
# Next session, call C (call B's machine, still warm: it goes back after 30 s idle): the
# whole blocks as the evaluation's compile unit, the attention now a graph break in
# compiled code (its first run failed in dynamo on the attention's launch), then the
# GPU tests of this session's two changes.
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 60 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_transition.py \
  tests/kernels/test_kernels.py -k "transition or untraced_in_a_compiled_region" 2>&1 | tail -1
timeout 500 python3 -m scalefold.cli bench eval --speed h200 --passes 1 \
  --variants h200+eval_compile_blocks,h200+eval_compile_blocks+transition_relu_epilogue \
  --json $OUT/callC_eval.json > $OUT/callC_eval.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callC_eval.txt | grep -E "^==|pass 1|warm-up|evaluation of|model FLOPs|FAILED" | tail -12
tail -4 $OUT/callC_eval.txt
