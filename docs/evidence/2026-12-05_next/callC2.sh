#!/bin/bash
# Twenty-first session, call C2 (~9 min), after N3: the screen of today's h200 beside
# `eval_compile_structure_module` alone (the nineteenth session measured it -2.6% only
# with `eval_aligned_lengths`, which alone gained nothing) and beside
# `attention_gate_epilogue` alone (measured only with the LayerNorm kernel).
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
B=h200+eval_length_buckets=64
timeout 540 python3 -m scalefold.cli bench eval --speed h200 --passes 1 --num-chains 45 \
  --variants $B,$B+eval_compile_structure_module,$B+attention_gate_epilogue \
  --json $OUT/callC2_eval.json > $OUT/callC2_eval.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callC2_eval.txt | grep -E "^==|warm-up|evaluation of|FAILED|Error|^variant|^h200" | tail -14
