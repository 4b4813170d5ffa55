#!/bin/bash
# Call 3 (the machine of calls 1-2, still warm): the step through the trainer with the two fields.
source scripts/gpu_env.sh; timeout 280 python3 -m scalefold.cli bench train --data-dir .cache/mini --speed h200 --single-pass-update --layer-norm-bwd-stream --num-workers 2 --num-train-iters 50 --val-every-iters 30 --warmup 5 --no-eval-warm-up --json $OUT/call3_train.json > $OUT/call3_train.txt 2>&1; echo rc=$?; grep -v "^\s" $OUT/call3_train.txt | grep -v -i warn | tail -22
