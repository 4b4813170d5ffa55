#!/bin/bash
# call 24: the fixed GPU preset test; the trainer with today's h200 (stacked projections,
# pinned copies); the 180-chain evaluation with 32-residue buckets, then the by-module
# profile of one 704-residue chain
source scripts/gpu_env.sh
timeout 70 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_kernels.py \
  -k "preset_speedups_compiled" 2>&1 | tee $OUT/call24_pytest.txt | tail -2
timeout 200 python3 -m scalefold.cli bench train --data-dir .cache/mini --speed h200 --num-workers 2 \
  --num-train-iters 60 --val-every-iters 30 --warmup 5 --json $OUT/call24_bench_train.json \
  > $OUT/call24_bench_train.txt 2>&1
tail -8 $OUT/call24_bench_train.txt
timeout 320 python3 -m scalefold.cli bench eval --speed h200 --eval-length-buckets 32 --eval-warm-up \
  --passes 1 --profile-length 704 --json $OUT/call24_eval_b32.json > $OUT/call24_eval_b32.txt 2>&1
tail -60 $OUT/call24_eval_b32.txt
