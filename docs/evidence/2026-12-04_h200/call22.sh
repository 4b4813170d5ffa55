#!/bin/bash
# call 22: GPU tests of what was built after call 21 (stacked projections, q scale, guard,
# compiled eval glue, pinned copies, warp-specialized forward); bench step h200 against
# h200+attention_stacked_projections (one process); attention forward at 704 (ws column)
source scripts/gpu_env.sh
timeout 100 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_kernels.py tests/kernels/test_linear.py \
  tests/kernels/test_projections.py tests/train/test_evaluate.py tests/utils \
  -k "other_launches or guard or compile or graphed or stacked or scales_q or pinned or warp or projection" 2>&1 | tee $OUT/call22_pytest.txt | tail -3
timeout 330 python3 -m scalefold.cli bench step --preset mlperf --device cuda --no-flops --warmup 1 \
  --steps 2 --variants h200,h200+attention_stacked_projections --json $OUT/call22_step.json > $OUT/call22_step.txt 2>&1
tail -5 $OUT/call22_step.txt
timeout 110 python3 -m scalefold.cli bench attention --n-res 704 --forward-only --kinds fwd \
  --max-seconds 60 --no-sweep > $OUT/call22_attn704.txt 2>&1; tail -16 $OUT/call22_attn704.txt
