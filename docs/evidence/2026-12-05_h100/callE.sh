#!/bin/bash
# call E (cache from call A; ~320 s of device time left): bench step, the preset beside
# it with the fixed single-pass update, then its GPU tests as time allows
source scripts/gpu_env.sh
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); echo "GPU: $GPU"
P=h200; case "$GPU" in *H100*) P=h100;; esac
timeout 200 python3 -m scalefold.cli bench step --preset mlperf --device cuda --no-flops --warmup 1 \
  --steps 2 --recycles 0,3 --variants $P,$P+single_pass_update \
  --json $OUT/callE_step.json > $OUT/callE_step.txt 2>&1
grep -v -i -E "warn|softmax|split the|important use" $OUT/callE_step.txt | grep -v "^$" | tail -8
timeout 45 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_optimizer.py tests/train/test_graphs.py \
  -k "single_pass" > $OUT/callE_pytest.txt 2>&1
grep -E "passed|failed|rror|^FAILED" $OUT/callE_pytest.txt | tail -8
