#!/bin/bash
# call 39: bench step, all four recycling counts, one process: today's h200, the h100 form
# (h200+recompute_outer_product) for the plan profile, and h200+trimul_bias_in_gating
# (the triangle multiplication's projection bias added in the gating without gradients);
# then the GPU tests of kernels, graphs, evaluator, transfers with what is left of the call
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv | tee $OUT/call39_smi.csv
timeout 380 python3 -m scalefold.cli bench step --preset mlperf --device cuda --no-flops --warmup 1 \
  --steps 2 --variants h200,h200+recompute_outer_product,h200+trimul_bias_in_gating \
  --json $OUT/call39_step.json > $OUT/call39_step.txt 2>&1
grep -v -i warn $OUT/call39_step.txt | tail -6
left=$((585 - SECONDS))
echo "pytest with ${left} s left"
timeout $left python3 -m pytest -v -p no:cacheprovider tests/kernels tests/train/test_evaluate.py \
  tests/train/test_graphs.py tests/utils/test_transfer.py tests/losses/test_losses_cuda_graph.py \
  -k "not concurrent" 2>&1 | tee $OUT/call39_pytest.txt | grep -E "passed|failed|FAILED|ERROR" | tail -15
