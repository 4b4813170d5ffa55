#!/bin/bash
# call 30: the trainer without and with input_copy_stream, one after the other (no evaluation
# warm-up: the first evaluation captures its graphs inside the loop; the per-step timeline in
# the JSON is what is read)
source scripts/gpu_env.sh
for v in base copy; do
  extra=""; [ $v = copy ] && extra="--input-copy-stream"
  timeout 230 python3 -m scalefold.cli bench train --data-dir .cache/mini --speed h200 --num-workers 2 \
    --num-train-iters 50 --val-every-iters 30 --warmup 5 --no-eval-warm-up $extra \
    --json $OUT/call30_train_$v.json > $OUT/call30_train_$v.txt 2>&1
  echo "== $v"; tail -12 $OUT/call30_train_$v.txt
done
