#!/bin/bash
# Twenty-second session: the GPU tests that failed in call 3 (ln_linear's narrow launch
# fixed; the key mask's GPU tolerance, its difference printed), the lDDT-Ca check of
# h200 + F + J + T against fp32, then the GPU suite's rest.
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 150 python3 -m pytest -q -s tests/kernels/test_key_mask.py tests/kernels/test_ln_linear.py \
  -p no:cacheprovider > $OUT/callV_tests.txt 2>&1
grep -E "max \||passed|failed|FAILED" $OUT/callV_tests.txt | tail -12
timeout 110 python3 -m scalefold.cli bench eval --check-lddt --speed h200 \
  --triangle-attention-folded-mask --trimul-projection-forward-kernel --transition-forward-kernel \
  > $OUT/callV_lddt.txt 2>&1
grep -v -i warn $OUT/callV_lddt.txt | tail -4
timeout 260 bash scripts/gpu_tests.sh 240 2>&1 | tail -3
