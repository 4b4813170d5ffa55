#!/bin/bash
# call 25: GPU tests of the in-kernel query scale with gradients (bf16 bits), the template
# pairs once, the batched evaluation groups and the preset test; bench step h200 against the
# h100 form with the stacked projections (h200+recompute_outer_product), one process
source scripts/gpu_env.sh
timeout 210 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_kernels.py \
  tests/kernels/test_templates.py tests/train/test_evaluate.py tests/utils \
  -k "scales_q or q_scale_bits or preset_speedups or template or group or batch or evaluat" \
  2>&1 | tee $OUT/call25_pytest.txt | tail -4
timeout 340 python3 -m scalefold.cli bench step --preset mlperf --device cuda --no-flops --warmup 1 \
  --steps 2 --variants h200,h200+recompute_outer_product --json $OUT/call25_step.json \
  > $OUT/call25_step.txt 2>&1
tail -6 $OUT/call25_step.txt
