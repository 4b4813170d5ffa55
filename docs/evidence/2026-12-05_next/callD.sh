#!/bin/bash
# Next session, call D (an H200 preferred): the step with the ReLU in the transitions'
# matmul epilogue (its recycling iterations run without gradients), one process.
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 560 python3 -m scalefold.cli bench step --preset mlperf --device cuda --no-flops \
  --warmup 1 --steps 2 --recycles 0,3 --variants h200,h200+transition_relu_epilogue \
  --json $OUT/callD_step.json > $OUT/callD_step.txt 2>&1
grep -v -i -E "warn|softmax|split the|important use" $OUT/callD_step.txt | grep -v "^$" | tail -6
