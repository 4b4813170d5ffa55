#!/bin/bash
# Next session, call A (an H200 preferred; carry [".whlg", ".cache/mini", ".devsnap",
# ".devcache"] where .devcache holds compile_cache.tgz.part-* from a recent call): the
# peaks with preserved_training_state's copies in host memory (fourteenth session), and
# whether h100 can take the single-pass update.
source scripts/gpu_env.sh
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); echo "GPU: $GPU"
timeout 30 python3 -m pytest -q -p no:cacheprovider tests/train/test_step.py -k off_the_device 2>&1 | tail -1
timeout 500 python3 -m scalefold.cli bench step --preset mlperf --device cuda --no-flops \
  --warmup 1 --steps 2 --recycles 0,3 --variants h200,h100,h100+single_pass_update \
  --json $OUT/callA_step.json > $OUT/callA_step.txt 2>&1
grep -v -i -E "warn|softmax|split the|important use" $OUT/callA_step.txt | grep -v "^$" | tail -6
