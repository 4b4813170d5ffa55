#!/bin/bash
# call C (cache from call A): the rest of the single-pass GPU tests (no -x), then bench
# step: the preset beside it with five candidates (single_pass_update out: call A's
# illegal memory access)
source scripts/gpu_env.sh
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); echo "GPU: $GPU"
P=h200; case "$GPU" in *H100*) P=h100;; esac
timeout 70 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_optimizer.py tests/train/test_graphs.py \
  -k single_pass > $OUT/callC_pytest.txt 2>&1
grep -E "passed|failed|Error|^FAILED" $OUT/callC_pytest.txt | tail -12
FWD=attention_stacked_triangle_bias+attention_shared_mask_biases+opm_stacked_projections+compile_template_attention+trimul_cached_weights
timeout 420 python3 -m scalefold.cli bench step --preset mlperf --device cuda --no-flops --warmup 1 \
  --steps 2 --recycles 0,3 --variants $P,$P+$FWD \
  --json $OUT/callC_step.json > $OUT/callC_step.txt 2>&1
grep -v -i -E "warn|softmax|split the|important use" $OUT/callC_step.txt | grep -v "^$" | tail -30
