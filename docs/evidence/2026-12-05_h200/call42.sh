#!/bin/bash
# call 42: bench step, recycles 0 and 3, one process: the six candidates together, then
# today's h200 (the last variant: its step timeline, graph replayed)
source scripts/gpu_env.sh
timeout 560 python3 -m scalefold.cli bench step --preset mlperf --device cuda --no-flops --warmup 1 \
  --steps 2 --recycles 0,3 \
  --variants h200+attention_fused_logits+attention_precomputed_delta+attention_unmasked_loads+attention_ds_dq_kernel+trimul_bias_in_gating+trimul_gating_kernel,h200 \
  --timeline --json $OUT/call42_step.json > $OUT/call42_step.txt 2>&1
grep -v -i -E "warn|softmax|split the|important use" $OUT/call42_step.txt | grep -v "^$" | tail -40
