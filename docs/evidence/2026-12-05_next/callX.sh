#!/bin/bash
# Twenty-fifth session, call X (any card, ~3 min): the GPU tests V1 found failing (a CPU
# generator drawing on the device, fixed) and the lDDT-Ca of today's h200 evaluation (the
# outer product mean's residual epilogue adopted) against fp32 on the mini chains.
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 90 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_trimul.py \
  -k "projection_gating_launches_give_the_same_bits" > $OUT/callX_tests.txt 2>&1
tail -2 $OUT/callX_tests.txt
timeout 150 python3 -m scalefold.cli bench eval --check-lddt --speed h200 \
  > $OUT/callX_lddt.txt 2>&1
grep -v -i warn $OUT/callX_lddt.txt | tail -4
