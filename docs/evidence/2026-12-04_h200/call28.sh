#!/bin/bash
# call 28: the trainer with today's h200 (template pairs once in evaluation; GPU idle between
# steps by CUDA events); the by-module profile of one 704-residue evaluation chain
source scripts/gpu_env.sh
timeout 290 python3 -m scalefold.cli bench train --data-dir .cache/mini --speed h200 --num-workers 2 \
  --num-train-iters 60 --val-every-iters 30 --warmup 5 --json $OUT/call28_bench_train.json \
  > $OUT/call28_bench_train.txt 2>&1
tail -14 $OUT/call28_bench_train.txt
timeout 110 python3 -m scalefold.cli bench eval --speed h200 --no-eval-warm-up --lengths 704 \
  --passes 1 --profile-length 704 > $OUT/call28_eval704.txt 2>&1
grep -B2 -A34 "^by module" $OUT/call28_eval704.txt | head -40
