#!/bin/bash
# Next session, call C (an H200, ~7 min), after N: the structure module's dynamic compile
# with and without the aligned lengths beside today's h200, in one process (the
# nineteenth session's call K measured A+csm -2.6% against A, and A alone +1.0% against
# h200 in another process). If csm gains as much without A, eval_aligned_lengths retires.
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
B=h200+eval_length_buckets=64
timeout 400 python3 -m scalefold.cli bench eval --speed h200 --passes 1 --num-chains 45 \
  --variants $B,$B+eval_compile_structure_module,$B+eval_aligned_lengths+eval_compile_structure_module \
  --json $OUT/callC_eval.json > $OUT/callC_eval.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callC_eval.txt | grep -E "^==|warm-up|evaluation of|FAILED|^variant|^h200" | tail -12
