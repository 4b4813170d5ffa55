#!/bin/bash
# Next session, call K (an H200 preferred, ~5 min): today's h200 evaluation (the two
# no-gradient kernels in it) beside eval_compile_blocks, on the sixteenth session's screen
# (45 chains, 64-residue buckets, one process): retire the field if it is slower (the
# screen with the kernels put it at ~+7%, not measured alone); then the by-kernel profile
# of a 224-residue chain of today's evaluation (where the next 1.4x must come from).
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
B=h200+eval_length_buckets=64
timeout 560 python3 -m scalefold.cli bench eval --speed h200 --passes 1 --num-chains 45 \
  --profile-length 224 --variants $B,$B+eval_compile_blocks \
  --json $OUT/callK_eval.json > $OUT/callK_eval.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callK_eval.txt | grep -E "^==|warm-up|pass 1|evaluation of|FAILED" | tail -10
grep -v -i -E "warn|softmax" $OUT/callK_eval.txt | grep -A24 "^kernel family" | head -50
