#!/bin/bash
# Call V1, short (~5 min with the start): the screen of today's h200 beside
# h200+opm_residual_epilogue (one process, pass 2) first, then the GPU tests of today's
# changes. No baseline of yesterday's code (see callV1.sh for the full call).
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 170 python3 -m scalefold.cli bench eval --speed h200 --passes 2 --no-eval-warm-up \
  --lengths 160,224,352,704 --variants h200,h200+opm_residual_epilogue,h200+attention_rotated_forward \
  --json $OUT/callV1S_eval.json > $OUT/callV1S_eval.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callV1S_eval.txt | grep -E "^==|pass [12]|evaluation of|Error|^ +[0-9]+-[0-9]+ " | tail -18
timeout 100 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_opm.py \
  tests/kernels/test_ln_linear.py tests/kernels/test_trimul.py tests/kernels/test_kernels.py \
  -k "epilogue_is or behind_the or with_gradients or kernel_launch or projection_gating or rotated_forward" \
  > $OUT/callV1S_tests.txt 2>&1
tail -3 $OUT/callV1S_tests.txt
