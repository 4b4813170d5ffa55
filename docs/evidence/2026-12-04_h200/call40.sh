#!/bin/bash
# call 40: bench step, recycles 0 and 3, one process: h200+trimul_bias_in_gating then h200
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv | tee $OUT/call40_smi.csv
timeout 395 python3 -m scalefold.cli bench step --preset mlperf --device cuda --no-flops --warmup 1 \
  --steps 2 --recycles 0,3 --variants h200+trimul_bias_in_gating,h200 \
  --json $OUT/call40_step.json > $OUT/call40_step.txt 2>&1
grep -v -i -E "warn|softmax|split the|important use" $OUT/call40_step.txt | grep -v "^$" | tail -12
