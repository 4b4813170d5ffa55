#!/bin/bash
# call A: GPU tests of the single-pass update, then bench step: the preset of this card
# (h200 on an H200, h100 on an H100) with the six candidates beside the preset, with the
# preset's timeline; then the compile cache
source scripts/gpu_env.sh
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); echo "GPU: $GPU"
P=h200; case "$GPU" in *H100*) P=h100;; esac
CAND=attention_stacked_triangle_bias+attention_shared_mask_biases+opm_stacked_projections+compile_template_attention+single_pass_update+trimul_cached_weights
timeout 90 python3 -m pytest -x -q -p no:cacheprovider tests/kernels/test_optimizer.py tests/train/test_graphs.py \
  -k single_pass > $OUT/callA_pytest.txt 2>&1
tail -3 $OUT/callA_pytest.txt
timeout 450 python3 -m scalefold.cli bench step --preset mlperf --device cuda --no-flops --warmup 1 \
  --steps 2 --recycles 0,3 --variants $P+$CAND,$P \
  --timeline --json $OUT/callA_step.json > $OUT/callA_step.txt 2>&1
grep -v -i -E "warn|softmax|split the|important use" $OUT/callA_step.txt | grep -v "^$" | tail -45
bash scripts/gpu_cache.sh pack
