#!/bin/bash
# call 23: the 180-chain evaluation with today's h200 (stacked projections, cached casts)
# and 32-residue buckets; then with the compiled glue at the preset's 64-residue buckets
source scripts/gpu_env.sh
timeout 215 python3 -m scalefold.cli bench eval --speed h200 --eval-length-buckets 32 --eval-warm-up \
  --passes 1 --json $OUT/call23_eval_b32.json > $OUT/call23_eval_b32.txt 2>&1
tail -12 $OUT/call23_eval_b32.txt
timeout 365 python3 -m scalefold.cli bench eval --speed h200 --eval-compile-glue --eval-warm-up \
  --passes 1 --json $OUT/call23_eval_glue.json > $OUT/call23_eval_glue.txt 2>&1
tail -12 $OUT/call23_eval_glue.txt
