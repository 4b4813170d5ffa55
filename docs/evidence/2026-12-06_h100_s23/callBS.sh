#!/bin/bash
# Call BS (any card, ~6 min): the training step with the bias tile as an MMA operand
# (h200 vs h200+attention_bias_mma, n = 0 and 3, one process), then the lDDT-Ca check of
# the evaluation with it against fp32 (random weights).
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 60 python3 -m scalefold.cli bench eval --check-lddt --speed h200 --attention-bias-mma \
  > $OUT/callBS_lddt.txt 2>&1
grep -v -i warn $OUT/callBS_lddt.txt | tail -3
timeout 330 python3 -m scalefold.cli bench step --preset mlperf --device cuda --no-flops \
  --warmup 1 --steps 2 --recycles 0,3 --variants h200,h200+attention_bias_mma \
  --json $OUT/callBS_step.json > $OUT/callBS_step.txt 2>&1
grep -v -i -E "warn|softmax|split the|important use" $OUT/callBS_step.txt | grep -v "^$" | tail -8
