#!/bin/bash
# Next session, call K (an H200 preferred, ~9 min): the screen of the sixteenth session
# (45 chains, 64-residue buckets, one process) for the evaluation's dynamic-shape
# compiles: today's h200; with the lengths' alignment stated (Triton's divisibility
# hints for inductor's kernels); with it and the structure module compiled (once slower
# without the hints: perf-log 2026-12-04 section 15); with it and whole blocks compiled
# (~7% slower without the hints: perf-log 2026-12-05 section 11). First the GPU test that
# the hints appear.
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 60 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_glue.py 2>&1 | tail -1
B=h200+eval_length_buckets=64
A=$B+eval_aligned_lengths
timeout 520 python3 -m scalefold.cli bench eval --speed h200 --passes 1 --num-chains 45 \
  --variants $B,$A,$A+eval_compile_structure_module,$A+eval_compile_blocks \
  --json $OUT/callK_eval.json > $OUT/callK_eval.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callK_eval.txt | grep -E "^==|warm-up|pass 1|evaluation of|FAILED" | tail -14
